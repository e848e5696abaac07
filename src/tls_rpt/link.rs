//! How TLS reporting is wired into the process: the reporter thread, each shard's link to it,
//! and shard 0's report task.
//!
//! What it does: [`Reporter::start`] starts the reporter thread (`store.rs`) when
//! `delivery.tls_policy.tls_rpt.enabled` is set; each shard gets a [`ShardLink`]: it installs
//! the shard's table, hands the counts over every flush interval and once more when the shard
//! stops; shard 0 also takes the job channel ([`Reporter::take_jobs`]) and runs the report
//! task (`sender.rs`). [`Reporter::stop`], after every shard has stopped, has the thread save
//! what it holds.
//!
//! What it does not do: no counting, no saving, no sending of its own.
//!
//! Invariants: a shard's last counts are handed over before the reporter is told to stop
//! (the shards have all returned by then), so a clean stop loses no session.

use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_channel::mpsc::UnboundedReceiver;

use super::recorder;
use super::store::{self, ReportJob, StoreMsg, StoreSettings, flush_interval};
use super::tally::Caps;
use crate::config::Config;
use crate::metrics::ShardMetrics;

/// Shard 0's end of the channel of due report periods.
pub type Jobs = UnboundedReceiver<ReportJob>;

/// The process's reporter: its thread and the channels to it.
pub struct Reporter {
    link: ShardLink,
    jobs: Arc<Mutex<Option<UnboundedReceiver<ReportJob>>>>,
    thread: std::thread::JoinHandle<()>,
}

/// A shard's link to the reporter thread (cloned into every shard).
#[derive(Clone)]
pub struct ShardLink {
    tx: mpsc::Sender<StoreMsg>,
    caps: Caps,
    flush: Duration,
}

impl Reporter {
    /// Starts the reporter when reporting is on; an error names why its directory cannot be
    /// used.
    pub fn start(config: &Config) -> std::io::Result<Option<Reporter>> {
        let r = &config.delivery.tls_policy.tls_rpt;
        if !r.enabled {
            return Ok(None);
        }
        let caps = Caps {
            domains: r.max_domains,
            details: r.max_failure_details,
        };
        let flush = flush_interval(r.report_interval.0);
        let settings = StoreSettings {
            dir: config.spool.path.join("tls-rpt"),
            caps,
            interval: r.report_interval.0,
            flush,
            save: r.save_interval.0,
        };
        let (jobs_tx, jobs_rx) = futures_channel::mpsc::unbounded();
        let (tx, thread) = store::start(settings, jobs_tx)?;
        Ok(Some(Reporter {
            link: ShardLink { tx, caps, flush },
            jobs: Arc::new(Mutex::new(Some(jobs_rx))),
            thread,
        }))
    }

    /// A link for a shard.
    pub fn link(&self) -> ShardLink {
        self.link.clone()
    }

    /// The channel of due periods, once (shard 0 takes it).
    pub fn jobs(&self) -> Arc<Mutex<Option<UnboundedReceiver<ReportJob>>>> {
        self.jobs.clone()
    }

    /// Has the thread save what it holds, and waits for it (after every shard stopped).
    pub fn stop(self) {
        let _ = self.link.tx.send(StoreMsg::Stop);
        drop(self.link);
        if self.thread.join().is_err() {
            tracing::error!("the TLS reporter thread panicked");
        }
    }
}

/// The job channel out of [`Reporter::jobs`], if nobody took it yet.
pub fn take_jobs(
    jobs: &Mutex<Option<UnboundedReceiver<ReportJob>>>,
) -> Option<UnboundedReceiver<ReportJob>> {
    jobs.lock().unwrap_or_else(|e| e.into_inner()).take()
}

impl ShardLink {
    /// Starts counting on this shard's thread.
    pub fn install(&self) {
        recorder::install(self.caps);
    }

    /// Hands the shard's counts over every flush interval (runs until dropped).
    pub async fn flush_loop(self, metrics: Rc<ShardMetrics>) {
        loop {
            glommio::timer::sleep(self.flush).await;
            self.flush(&metrics);
        }
    }

    fn flush(&self, metrics: &ShardMetrics) {
        if let Some(t) = recorder::take() {
            metrics.tls_rpt_dropped.add(t.dropped);
            let _ = self.tx.send(StoreMsg::Tally(t));
        }
    }

    /// Hands the last counts over and stops counting (the shard is stopping).
    pub fn finish(&self, metrics: &ShardMetrics) {
        self.flush(metrics);
        if let Some(t) = recorder::uninstall().filter(|t| !t.is_empty()) {
            let _ = self.tx.send(StoreMsg::Tally(t));
        }
    }
}
