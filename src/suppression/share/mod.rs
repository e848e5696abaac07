//! One suppression list across a cluster: this host's changes go to the cluster's Redis and
//! the other nodes' changes come back into this host's list.
//!
//! What it does: [`Share::start`] runs two threads, each with its own Redis connection (the
//! `redis` crate's synchronous client, as the cluster agent has): the publisher
//! (`publisher.rs`) takes this host's changes from the list's writer, after the publish
//! point, and publishes them; the subscriber (`subscriber.rs`) reads the stream of every
//! node's changes (or the whole list from the hash when it has fallen behind or joins) and
//! hands them to the writer, which applies them through the normal write path. Both mark the
//! list degraded while Redis is unreachable and log when that starts and ends; the figures
//! are in [`encode_metrics`].
//!
//! What it does not do: no Redis on the shards (they only read the table), no decision about
//! which change wins (the publish script and the writer decide: last writer by the entry's
//! time).
//!
//! Invariants: every wait is bounded (Redis calls by `cluster.timeout`, the stream read by
//! [`BLOCK`], the writer's answers by the stop flag checked every 100 ms); a batch is at most
//! [`BATCH`] changes, so memory is bounded whatever the backlog; the threads stop within
//! about a second of [`Share::stop`].

mod publisher;
mod subscriber;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::outbox::ShareStats;
use super::writer::Request;
use crate::cluster::Settings;

/// The most changes one publish or one apply carries.
pub const BATCH: usize = 1000;
/// How long one stream read waits for new changes.
pub const BLOCK: Duration = Duration::from_secs(1);

/// What both threads use.
#[derive(Clone)]
struct Ctx {
    settings: Settings,
    keys: wire::Keys,
    dir: PathBuf,
    writer: SyncSender<Request>,
    stats: Arc<ShareStats>,
    stop: Arc<AtomicBool>,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// A connection to the cluster's Redis whose reads wait at most `read` (and writes the
    /// configured timeout).
    fn connect(&self, read: Duration) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.settings.redis.as_str())?;
        let conn = client.get_connection_with_timeout(self.settings.timeout)?;
        conn.set_read_timeout(Some(read))?;
        conn.set_write_timeout(Some(self.settings.timeout))?;
        Ok(conn)
    }

    /// Sleeps `d`, or less if stopped.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stopped() {
            std::thread::sleep(Duration::from_millis(50).min(d));
        }
    }

    /// Hands `request` to the writer, waiting while its queue is full; false when stopped or
    /// the writer has gone.
    fn tell(&self, mut request: Request) -> bool {
        loop {
            match self.writer.try_send(request) {
                Ok(()) => return true,
                Err(TrySendError::Full(r)) if !self.stopped() => {
                    request = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return false,
            }
        }
    }

    /// Sends the request `make` builds to the writer and waits for its answer; None when
    /// stopped or the writer has gone.
    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        if !self.tell(make(tx)) {
            return None;
        }
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(answer) => return Some(answer),
                Err(mpsc::RecvTimeoutError::Timeout) if !self.stopped() => {}
                Err(_) => return None,
            }
        }
    }

    /// Applies changes from the cluster (each with whether this node made it); false when
    /// they were not written (retry later).
    fn apply(&self, entries: Vec<(super::Entry, bool)>) -> bool {
        if entries.is_empty() {
            return true;
        }
        match self.ask(|done| Request::Apply { entries, done }) {
            Some(Ok(n)) => {
                self.stats.applied.fetch_add(n as u64, Ordering::Relaxed);
                true
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "suppression list: changes from the cluster not written; trying again");
                false
            }
            None => false,
        }
    }
}

/// Whether one thread can reach Redis, logged when that changes.
struct Health<'a> {
    down: &'a AtomicBool,
    what: &'static str,
    backoff: Duration,
}

impl<'a> Health<'a> {
    fn new(down: &'a AtomicBool, what: &'static str) -> Health<'a> {
        Health {
            down,
            what,
            backoff: Duration::from_millis(100),
        }
    }

    /// A call failed: log it if it is the first of a run; how long to wait before trying again.
    fn failed(&mut self, e: &redis::RedisError) -> Duration {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "suppression list: {} failed: Redis unreachable", self.what);
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
        wait
    }

    /// A call succeeded.
    fn ok(&mut self) {
        self.backoff = Duration::from_millis(100);
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("suppression list: {} restored", self.what);
        }
    }
}

/// The running threads of a shared list.
pub struct Share {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Share {
    /// Starts the publisher (woken through `wake` when the writer writes a change made here)
    /// and the subscriber of the list whose writer takes `writer` and whose files are in
    /// `dir`.
    pub fn start(
        settings: Settings,
        dir: PathBuf,
        writer: SyncSender<Request>,
        wake: Receiver<()>,
        stats: Arc<ShareStats>,
    ) -> std::io::Result<Share> {
        let ctx = Ctx {
            keys: wire::Keys::new(&settings.prefix),
            settings,
            dir,
            writer,
            stats,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let mut share = Share {
            stop: ctx.stop.clone(),
            threads: Vec::new(),
        };
        let c = ctx.clone();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f)
        };
        share.threads.push(spawn(
            "suppression-pub",
            Box::new(move || publisher::run(&c, &wake)),
        )?);
        share.threads.push(spawn(
            "suppression-sub",
            Box::new(move || subscriber::run(&ctx)),
        )?);
        Ok(share)
    }

    /// Stops both threads (a batch being published is finished or left for the next start).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The figures of one scrape.
#[derive(Debug)]
struct Figures {
    published: u64,
    applied: u64,
    unpublished: i64,
    degraded: i64,
    commands: u64,
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "suppression_cluster_unpublished_bytes",
                "Bytes of the suppression log after the publish point: changes made here waiting to be published.",
                self.unpublished,
            ),
            (
                "suppression_cluster_degraded",
                "1 while the suppression list cannot reach Redis.",
                self.degraded,
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let counters = [
            (
                "suppression_cluster_published",
                "Changes made here published to the cluster.",
                self.published,
            ),
            (
                "suppression_cluster_applied",
                "Changes from the cluster that changed this node's list.",
                self.applied,
            ),
            (
                "suppression_cluster_redis_commands",
                "Redis calls the suppression list made.",
                self.commands,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// The Prometheus text of a shared list's figures.
pub fn encode_metrics(stats: &ShareStats) -> String {
    let mut registry = Registry::with_prefix("mta");
    registry.register_collector(Box::new(Figures {
        published: stats.published.load(Ordering::Relaxed),
        applied: stats.applied.load(Ordering::Relaxed),
        unpublished: i64::try_from(stats.unpublished_bytes.load(Ordering::Relaxed))
            .unwrap_or(i64::MAX),
        degraded: i64::from(stats.degraded()),
        commands: stats.commands.load(Ordering::Relaxed),
    }));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "encoding suppression metrics failed");
    }
    out
}
