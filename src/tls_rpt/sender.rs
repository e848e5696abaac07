//! Shard 0's report task: turns a due period into reports and sends each to the addresses
//! its policy domain publishes.
//!
//! What it does: for each [`ReportJob`] and each policy domain in it, looks up
//! `_smtp._tls.<domain>` TXT through the shard's resolver, builds the JSON report, gzips it,
//! and for each address: `mailto:` builds the report message (`message.rs`), DKIM-signs it
//! when signing applies to mail we originate, appends it to the shard's spool and hands it
//! to the queue (like a DSN: it is in the spool before the queue has it); `https:` uploads it
//! (`post.rs`) in a task of its own, tried `https_attempts` times, 5 s apart and then twice as
//! long each time. Each address gets a `TlsReport` event and counts in `tls_reports_sent` or
//! `tls_reports_failed`. When every domain of the job has been handled (mail queued, uploads
//! done or given up) the period's pending file is removed.
//!
//! What it does not do: no counting, no scheduling (`store.rs` decides when a period is due),
//! no delivery (the queue delivers report messages like any other).
//!
//! Invariants: runs only on shard 0 and only in tasks of its own: the shard's other work
//! never waits for it; the domains that get report mail are made quiet on this shard before
//! the message is queued (`recorder::quiet`), so a report that fails to go out is not itself
//! reported; a job's pending file is removed only after its reports are queued or
//! uploaded (or given up).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_channel::mpsc::UnboundedReceiver;
use futures_lite::StreamExt;

use super::message::{ReportMail, build as build_mail};
use super::post::post;
use super::recorder;
use super::report::{Header, Rua, build, datetime, file_name, gzip, rua};
use super::store::ReportJob;
use super::tally::PolicyTally;
use crate::config::Config;
use crate::delivery::{QueueHandle, QueueMsg};
use crate::dns::Resolver;
use crate::eventlog::TlsReport;
use crate::server::ServerContext;
use crate::spool::{MessageRecord, Recipient};

/// What the report task needs of shard 0.
pub struct ReportSender {
    /// The configuration (read at start).
    pub config: Arc<Config>,
    /// Shard 0's resolver.
    pub resolver: Resolver,
    /// Shard 0's server context (spool, ids, DKIM, event log, metrics).
    pub ctx: Rc<ServerContext>,
    /// Shard 0's queue.
    pub queue: QueueHandle,
    /// The verifying TLS client configuration for uploads.
    pub tls: Arc<rustls::ClientConfig>,
}

/// Starts shard 0's report task for the periods `jobs` brings; without a TLS client
/// configuration (a bad `tls.ca_file`, which already stops the start) nothing is sent.
pub fn spawn(
    config: &Arc<Config>,
    resolver: Resolver,
    ctx: &Rc<ServerContext>,
    queue: &QueueHandle,
    jobs: UnboundedReceiver<ReportJob>,
) {
    let tls = match crate::tls::ClientTls::new(config.tls.ca_file.as_deref()) {
        Ok(t) => t.verified,
        Err(e) => {
            tracing::error!(error = %e, "TLS reports are not sent: no TLS client configuration");
            return;
        }
    };
    let sender = ReportSender {
        config: config.clone(),
        resolver,
        ctx: ctx.clone(),
        queue: queue.clone(),
        tls,
    };
    glommio::spawn_local(sender.run(jobs)).detach();
}

/// What one report is.
struct Built {
    domain: String,
    report_id: String,
    file_name: String,
    gz: Vec<u8>,
    sessions: (u64, u64),
}

impl ReportSender {
    /// Sends the reports of every job that arrives, until the reporter thread ends.
    pub async fn run(self, mut jobs: UnboundedReceiver<ReportJob>) {
        let me = Rc::new(self);
        while let Some(job) = jobs.next().await {
            me.clone().job(job).await;
        }
    }

    async fn job(self: Rc<Self>, job: ReportJob) {
        self.ctx
            .metrics
            .tls_rpt_domains
            .set(job.tally.domains.len() as u64);
        if job.tally.dropped > 0 {
            tracing::warn!(dropped = job.tally.dropped, start = %datetime(job.start), "TLS report period: sessions not counted (caps reached)");
        }
        let mut uploads = Vec::new();
        for (domain, policies) in &job.tally.domains {
            uploads.extend(self.clone().domain(&job, domain, policies).await);
        }
        for u in uploads {
            u.await;
        }
        let file = job.file.clone();
        let _ = glommio::executor()
            .spawn_blocking(move || std::fs::remove_file(file))
            .await;
        self.ctx.log.flush();
    }

    /// Queues the mail reports of `domain` and starts its uploads (returned to be awaited).
    async fn domain(
        self: Rc<Self>,
        job: &ReportJob,
        domain: &str,
        policies: &[PolicyTally],
    ) -> Vec<glommio::Task<()>> {
        let records = match self.resolver.txt(&format!("_smtp._tls.{domain}")).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%domain, error = %e, "no TLS reporting address");
                return Vec::new();
            }
        };
        let addresses = rua(&records);
        if addresses.is_empty() {
            return Vec::new();
        }
        let r = &self.config.delivery.tls_policy.tls_rpt;
        let host = &self.config.hostname;
        let from = r.from_address(host);
        let report_id = format!("{}_{domain}@{host}", datetime(job.start));
        let header = Header {
            organization: if r.organization.is_empty() {
                host
            } else {
                &r.organization
            },
            contact: if r.contact.is_empty() {
                &from
            } else {
                &r.contact
            },
            report_id: &report_id,
            start: job.start,
            end: job.end,
        };
        let gz = gzip(&build(&header, domain, policies));
        let sessions = policies
            .iter()
            .fold((0, 0), |(s, f), p| (s + p.success, f + p.failure));
        let built = Rc::new(Built {
            domain: domain.to_owned(),
            file_name: file_name(host, domain, job.start, job.end, &job.start.to_string()),
            report_id,
            gz,
            sessions,
        });
        let mut uploads = Vec::new();
        for address in addresses {
            match address {
                Rua::Mailto(to) => self.mail(&built, &from, &to).await,
                Rua::Https(url) => {
                    let (me, built) = (self.clone(), built.clone());
                    uploads.push(glommio::spawn_local(async move {
                        me.upload(&built, &url).await
                    }));
                }
            }
        }
        uploads
    }

    fn event(&self, b: &Built, rua: &str, outcome: &str, error: &str, queue_id: &str) {
        match outcome {
            "failed" => self.ctx.metrics.tls_reports_failed.inc(),
            _ => self.ctx.metrics.tls_reports_sent.inc(),
        }
        self.ctx.log.tls_report(&TlsReport {
            domain: &b.domain,
            report_id: &b.report_id,
            rua,
            outcome,
            error,
            queue_id,
            sessions: b.sessions,
            size: b.gz.len(),
        });
    }

    async fn mail(&self, b: &Built, from: &str, to: &str) {
        let rua = format!("mailto:{to}");
        if let Some((_, d)) = to.rsplit_once('@') {
            recorder::quiet(d);
        }
        let id = self.ctx.ids.borrow_mut().next(SystemTime::now());
        let unique = id.to_string();
        let body = build_mail(&ReportMail {
            from,
            to,
            domain: &b.domain,
            submitter: &self.config.hostname,
            report_id: &b.report_id,
            file_name: &b.file_name,
            report: &b.gz,
            unique: &unique,
            date: SystemTime::now(),
        });
        let mut record = MessageRecord {
            id: id.0,
            reverse_path: from.to_owned(),
            mail_params: Vec::new(),
            recipients: vec![Recipient::new(to.to_owned())],
            arrival_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            client_addr: "local".into(),
            helo: self.config.hostname.clone(),
            tls: None,
            auth: None,
            body,
            campaign: None,
            tenant: None,
            priority: 0,
        };
        if let Some(dkim) = &self.ctx.dkim {
            // A report is mail this host originates.
            dkim.sign(&mut record, true).await;
        }
        match self.ctx.spool.append_message(&record).await {
            Ok(()) => {
                self.queue.send(QueueMsg::Accepted(record));
                self.event(b, &rua, "queued", "", &unique);
            }
            Err(e) => {
                tracing::warn!(domain = %b.domain, %rua, error = %e, "queueing a TLS report failed");
                self.event(b, &rua, "failed", &e.to_string(), "");
            }
        }
    }

    async fn upload(&self, b: &Built, url: &str) {
        let r = &self.config.delivery.tls_policy.tls_rpt;
        let mut wait = Duration::from_secs(5);
        let mut last = String::new();
        for attempt in 1..=r.https_attempts {
            match post(
                &self.resolver,
                self.tls.clone(),
                url,
                &b.gz,
                r.https_timeout.0,
            )
            .await
            {
                Ok(()) => {
                    self.event(b, url, "sent", "", "");
                    return;
                }
                Err(e) => {
                    tracing::info!(domain = %b.domain, %url, attempt, error = %e, "TLS report upload failed");
                    last = e.to_string();
                }
            }
            if attempt < r.https_attempts {
                glommio::timer::sleep(wait).await;
                wait *= 2;
            }
        }
        self.event(b, url, "failed", &last, "");
    }
}
