//! The host's feedback state: which addresses are read as reports, how VERP addresses are
//! made and checked, the label book and the Message-ID index; and each shard's view of it.
//!
//! What it does: [`Feedback::open`] builds it from `[feedback]` (reading `secret_file` and the
//! label book once); [`Feedback::rcpt`] says at RCPT whether an address is a report address
//! (accepted from anyone) or a VERP address that fails its check (refused); [`Shard`] gives a
//! message's VERP envelope sender at delivery and remembers the Message-ID of each accepted
//! message, without taking a lock per message.
//!
//! What it does not do: no report parsing or matching (`report`, `matching`), no effects (the
//! server's intake applies them).
//!
//! Invariants: None from [`Feedback::open`] when `[feedback]` reads no reports; a VERP address
//! is only made when a bounce domain and secret are configured and only decodes under them.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::config::{FeedbackSection, MIN_SECRET};
use super::index::{SentIndex, ShardIndex};
use super::labels::{LabelBook, ShardLabels};
use super::verp::{Verp, VerpError, VerpTarget};
use crate::server::relay::DomainSet;
use crate::shaping::{BounceClass, Shaping};
use crate::smtp::EnhancedStatus;

/// Why the feedback state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// `secret_file` could not be read or holds too short a key.
    #[error("feedback.secret_file {path}: {problem}")]
    Secret {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The label book could not be opened.
    #[error("feedback label book in {dir}: {source}")]
    Labels {
        /// Its directory.
        dir: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// What an address is at RCPT.
#[derive(Debug, PartialEq, Eq)]
pub enum Rcpt {
    /// Not an address of ours: the relay policy decides.
    Other,
    /// A report address or a valid VERP address: accepted from anyone, read as a report.
    Report,
    /// An address of the bounce domain that is not a valid VERP address (why).
    Refused(&'static str),
}

/// See the module header.
pub struct Feedback {
    verp: Option<Verp>,
    bounce_domain: String,
    local: String,
    senders: DomainSet,
    all_senders: bool,
    pools: Vec<String>,
    reports: Vec<String>,
    unmatched_to: String,
    suppress_complaints: bool,
    labels: Arc<LabelBook>,
    index: Arc<SentIndex>,
}

impl Feedback {
    /// The host's state for `cfg` (None when it reads no reports); the label book lives in
    /// `<spool_dir>/feedback`.
    pub fn open(
        cfg: &FeedbackSection,
        spool_dir: &Path,
    ) -> Result<Option<Arc<Feedback>>, FeedbackError> {
        if !cfg.enabled() {
            return Ok(None);
        }
        let verp = match cfg.bounce_domain.is_empty() {
            true => None,
            false => Some(Verp::new(&secret(cfg)?, cfg.lifetime_days())),
        };
        let dir = spool_dir.join("feedback");
        let labels =
            LabelBook::open(&dir, cfg.max_label_pairs).map_err(|source| FeedbackError::Labels {
                dir: dir.display().to_string(),
                source,
            })?;
        Ok(Some(Arc::new(Feedback {
            verp,
            bounce_domain: cfg.bounce_domain.trim_end_matches('.').to_ascii_lowercase(),
            local: cfg.verp_local.clone(),
            senders: DomainSet::new(&cfg.verp_senders),
            all_senders: cfg.verp_senders.iter().any(|s| s == "*"),
            pools: cfg.verp_pools.clone(),
            reports: cfg
                .report_addresses
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            unmatched_to: cfg.unmatched_to.clone(),
            suppress_complaints: cfg.suppress_complaints,
            labels: Arc::new(labels),
            index: Arc::new(SentIndex::open(&dir, cfg.message_id_index)),
        })))
    }

    fn in_bounce_domain(&self, address: &str) -> bool {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        !self.bounce_domain.is_empty()
            && domain
                .trim_end_matches('.')
                .eq_ignore_ascii_case(&self.bounce_domain)
    }

    /// Whether mail to `address` is read as a report (it was accepted as one).
    pub fn consumes(&self, address: &str) -> bool {
        self.in_bounce_domain(address)
            || self.reports.iter().any(|a| a.eq_ignore_ascii_case(address))
    }

    /// What `local@domain` is at RCPT, at `now` (an address is put together only for the
    /// bounce domain: other recipients cost no allocation).
    pub fn rcpt(&self, local: &str, domain: &str, now: SystemTime) -> Rcpt {
        let named = |a: &String| {
            a.rsplit_once('@').is_some_and(|(l, d)| {
                l.eq_ignore_ascii_case(local) && d.eq_ignore_ascii_case(domain)
            })
        };
        if self.reports.iter().any(named) {
            return Rcpt::Report;
        }
        let bounce = domain.trim_end_matches('.');
        if self.bounce_domain.is_empty() || !bounce.eq_ignore_ascii_case(&self.bounce_domain) {
            return Rcpt::Other;
        }
        // RFC 5321 4.5.1 and RFC 2142: postmaster (and abuse) of every domain we take mail for.
        if local.eq_ignore_ascii_case("postmaster") || local.eq_ignore_ascii_case("abuse") {
            return Rcpt::Report;
        }
        let address = format!("{local}@{domain}");
        match self.verp.as_ref().map(|v| v.decode(&address, now)) {
            Some(Ok(_)) => Rcpt::Report,
            Some(Err(VerpError::Expired)) => Rcpt::Refused("this bounce address has expired"),
            _ => Rcpt::Refused("no such mailbox"),
        }
    }

    /// The message and recipient `address` names, if it is a valid VERP address of ours.
    pub fn decode(&self, address: &str, now: SystemTime) -> Option<VerpTarget> {
        if !self.in_bounce_domain(address) {
            return None;
        }
        self.verp.as_ref()?.decode(address, now).ok()
    }

    /// Whether mail from `sender` (the envelope sender; empty for the null sender) in source
    /// pool `pool` is sent with a VERP envelope sender.
    pub fn verp_applies(&self, sender: &str, pool: Option<&str>) -> bool {
        if self.verp.is_none() || sender.is_empty() {
            return false;
        }
        let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
        self.all_senders
            || self.senders.contains(domain)
            || pool.is_some_and(|p| self.pools.iter().any(|q| q == p))
    }

    /// The VERP envelope sender for `recipient` of message `queue_id` with label pair
    /// `labels`; None without a bounce domain, or when the recipient cannot be carried in a
    /// local part (a quoted local part, an address literal: the message then keeps its own
    /// envelope sender).
    pub fn encode(
        &self,
        queue_id: u64,
        labels: u32,
        recipient: &str,
        now: SystemTime,
    ) -> Option<String> {
        let v = self.verp.as_ref()?;
        if !carried(recipient) {
            return None;
        }
        Some(v.encode(
            (&self.local, &self.bounce_domain),
            queue_id,
            labels,
            recipient,
            now,
        ))
    }

    /// Where unmatched reports are forwarded (empty: they are only logged).
    pub fn unmatched_to(&self) -> &str {
        &self.unmatched_to
    }

    /// Whether a complaint suppresses its recipient.
    pub fn suppress_complaints(&self) -> bool {
        self.suppress_complaints
    }

    /// The label book.
    pub fn labels(&self) -> &Arc<LabelBook> {
        &self.labels
    }

    /// The Message-ID index.
    pub fn index(&self) -> &Arc<SentIndex> {
        &self.index
    }
}

/// Whether `recipient` fits in a VERP local part as `user=domain`: a dot-atom local part
/// (RFC 5321 atext and dots, or UTF-8) and a domain name, at most 200 octets in all.
fn carried(recipient: &str) -> bool {
    let Some((user, domain)) = recipient.rsplit_once('@') else {
        return false;
    };
    let atext =
        |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b) || b >= 0x80;
    recipient.len() <= 200
        && !user.is_empty()
        && user.bytes().all(atext)
        && !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b >= 0x80)
}

/// The key: `secret`, or the first line of `secret_file`.
fn secret(cfg: &FeedbackSection) -> Result<Vec<u8>, FeedbackError> {
    if let Some(s) = &cfg.secret {
        return Ok(s.as_bytes().to_vec());
    }
    let path = cfg.secret_file.as_deref().unwrap_or(Path::new(""));
    let fail = |problem: String| FeedbackError::Secret {
        path: path.display().to_string(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let line = text.lines().next().unwrap_or("").trim();
    if line.len() < MIN_SECRET {
        return Err(fail(format!(
            "the key on its first line must be at least {MIN_SECRET} octets"
        )));
    }
    Ok(line.as_bytes().to_vec())
}

/// A shard's view of the host's feedback state.
pub struct Shard {
    host: Arc<Feedback>,
    labels: ShardLabels,
    index: ShardIndex,
    shaping: Option<Arc<Shaping>>,
    campaigns: Arc<crate::campaigns::Campaigns>,
}

impl Shard {
    /// A shard's view of `host`; bounces are classed with `shaping`'s patterns when there is
    /// a shaping file, and counted in `campaigns`.
    pub fn new(
        host: Arc<Feedback>,
        shaping: Option<Arc<Shaping>>,
        campaigns: Arc<crate::campaigns::Campaigns>,
    ) -> Shard {
        Shard {
            labels: ShardLabels::new(host.labels.clone()),
            index: ShardIndex::new(host.index.clone()),
            host,
            shaping,
            campaigns,
        }
    }

    /// The host's state.
    pub fn host(&self) -> &Feedback {
        &self.host
    }

    /// The host's campaign state.
    pub fn campaigns(&self) -> &Arc<crate::campaigns::Campaigns> {
        &self.campaigns
    }

    /// The VERP envelope sender of `recipient` of message `queue_id` labelled `campaign` and
    /// `tenant` (empty: none), sent now.
    pub fn verp(
        &self,
        queue_id: u64,
        (campaign, tenant): (&str, &str),
        recipient: &str,
    ) -> Option<String> {
        let labels = self.labels.number(campaign, tenant);
        self.host
            .encode(queue_id, labels, recipient, SystemTime::now())
    }

    /// Remembers an accepted message's Message-ID (empty: none) for the reports that quote it,
    /// with its labels and its recipients (their addresses).
    pub fn accepted<'a>(
        &self,
        message_id: &str,
        queue_id: u64,
        (campaign, tenant): (&str, &str),
        mut recipients: impl ExactSizeIterator<Item = &'a str>,
    ) {
        if message_id.is_empty() || self.host.index.is_off() {
            return;
        }
        let recipient = match (recipients.len(), recipients.next()) {
            (1, Some(r)) => super::index::recipient_hash(r),
            _ => 0,
        };
        let labels = self.labels.number(campaign, tenant);
        let sent = super::index::Sent {
            queue_id,
            labels,
            recipient,
        };
        self.index.add(message_id, sent);
    }

    /// Hands the gathered Message-IDs to the host (once a second).
    pub fn chore(&self) {
        self.index.flush();
    }

    /// The bounce class of a reported failure.
    pub fn classify(&self, status: EnhancedStatus, diagnostic: &str) -> BounceClass {
        let patterns = self.shaping.as_deref().map(Shaping::bounce_classifier);
        crate::shaping::classify_failure(patterns, status, diagnostic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_addresses_are_carried_in_a_verp_sender() {
        assert!(carried("jo.doe+x=y@example.org"));
        assert!(carried("ü@exämple.org"));
        assert!(!carried("\"jo doe\"@example.org"));
        assert!(!carried("jo@[192.0.2.1]"));
        assert!(!carried("no-domain"));
        assert!(!carried(&format!("{}@example.org", "a".repeat(200))));
    }
}
