//! Taking a message into the delivery queue, as values: newly accepted, or recovered from the
//! spool.
//!
//! What it does: rewrites `<Postmaster>` to the configured mailbox, builds the message's
//! envelope and its recipients' progress, bounces mail with too many `Received:` fields when
//! recovered from the spool (RFC 5321 6.3: queued before the check at reception existed; new
//! mail is counted at the end of its DATA), and turns the pending recipients into jobs:
//! restored deferrals wait for their time, the others are routed now, grouped by domain.
//!
//! What it does not do: no routing, no memory budget (the message table), no spool writes,
//! no clock (times are parameters).
//!
//! Invariants: a message whose recipients are all final is not taken; a recovered retry time
//! never makes the clock arithmetic overflow.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::classify::Outcome;
use super::message::{Facts, Message, Progress};
use super::views::domain_of;
use crate::config::Config;
use crate::queue::{DomainNames, Job, Recipients};
use crate::smtp::EnhancedStatus;
use crate::spool::{MessageRecord, RecipientState};

/// The longest wait taken from a recovered Deferred state (a year: later than any retry
/// schedule's lifetime, so the recipient expires when it comes due).
const MAX_SPOOLED_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// A message as it arrives at the queue.
pub struct Arrival {
    /// Its record; `body` is the whole message when `complete`, else its header section.
    pub record: MessageRecord,
    /// Recovered states (None for new mail).
    pub states: Option<Vec<Option<RecipientState>>>,
    /// Whether `record.body` is the whole message.
    pub complete: bool,
    /// The body's size.
    pub size: usize,
    /// The body has octets over 127.
    pub eight_bit: bool,
}

/// What the queue does with an arrival.
pub struct Intake {
    /// The envelope.
    pub msg: Message,
    /// The whole body, when the arrival had it.
    pub body: Option<Vec<u8>>,
    /// Each recipient's progress.
    pub progress: Progress,
    /// Jobs to route now, one per recipient domain.
    pub now: Vec<Job>,
    /// Recovered deferrals and when they are due.
    pub later: Vec<(Job, Instant)>,
    /// Too many hops: every pending recipient bounces with this.
    pub bounce: Option<(Job, Outcome)>,
}

/// What the queue does with `a`, at `now` (`now_ms` on the wall clock); `pool` decides the
/// message's source pool from its record and header section, `verp` whether mail of that
/// sender and pool goes with a VERP envelope sender (then each recipient is a job of its own).
/// Jobs take their domain names from `names`. None when nothing is pending.
pub fn take(
    mut a: Arrival,
    config: &Config,
    names: &mut DomainNames,
    pool: impl FnOnce(&MessageRecord, &[u8]) -> Option<String>,
    verp: impl FnOnce(&str, Option<&str>) -> bool,
    (now, now_ms): (Instant, u64),
) -> Option<Intake> {
    let n = a.record.recipients.len();
    // `<Postmaster>` without a domain (RFC 5321 4.5.1) goes to the configured mailbox; the
    // spool keeps the address as received, so a restart rewrites it the same way.
    for r in &mut a.record.recipients {
        if r.address.eq_ignore_ascii_case("postmaster") {
            r.address = config.postmaster_address();
        }
    }
    let recovered = a.states.is_some();
    let states = a.states.unwrap_or_else(|| vec![None; n]);
    let age = Duration::from_millis(now_ms.saturating_sub(a.record.arrival_unix_ms));
    let arrival = now.checked_sub(age).unwrap_or(now);
    let progress = Progress::new(&states);
    if progress.pending == 0 {
        return None;
    }
    let body = std::mem::take(&mut a.record.body);
    // RFC 5321 6.3: mail queued before the check at reception existed may loop (new mail was
    // counted at the end of its DATA). Our own `Received:` field (on every message from a
    // client) is not one of the client's.
    let hops = match recovered {
        true => crate::smtp::hops::received_count(&body)
            .saturating_sub(usize::from(a.record.client_addr != "local")),
        false => 0,
    };
    let pool = pool(&a.record, &body);
    let facts = Facts {
        verp: verp(&a.record.reverse_path, pool.as_deref()),
        size: a.size,
        pool,
        arrival,
        eight_bit: a.eight_bit,
        trusted: trusted(&a.record, &config.relay.trusted_networks),
        // Only DANE and MTA-STS can hold mail back: without them the header is not looked for.
        tls_required_no: receiver_policies(config) && crate::headers::tls_required_no(&body),
    };
    // Validated by the spool walk (recovered) or written by the session (new).
    let stored = crate::priority::Class::from_code(a.record.priority).unwrap_or(None);
    let class = |domain: &str| config.priority.for_destination(domain, stored);
    let msg = Message::new(a.record, facts);
    let id = msg.record.id;
    let hostname = &config.hostname;
    let mut intake = Intake {
        body: a.complete.then_some(body),
        now: Vec::new(),
        later: Vec::new(),
        bounce: None,
        progress,
        msg,
    };
    let max_hops = config.smtp.max_received_headers;
    if hops > max_hops {
        let pending = intake.progress.pending_recipients();
        let domain = pending
            .first()
            .map(|&i| domain_of(&intake.msg.recipient(i).address, hostname))
            .unwrap_or_default();
        let job = Job {
            message: id,
            priority: class(&domain),
            domain: names.get(&domain),
            recipients: pending.into(),
            attempts: 0,
            arrival,
        };
        let outcome = Outcome::bounce(
            EnhancedStatus::new(5, 4, 6),
            format!("Too many hops: {hops} Received: header fields (limit {max_hops})"),
        );
        intake.bounce = Some((job, outcome));
        return Some(intake);
    }
    // Group the pending recipients by domain and by "ready now" vs "deferred until".
    let mut by_domain: HashMap<String, Recipients> = HashMap::new();
    for (i, (r, s)) in intake.msg.record.recipients.iter().zip(&states).enumerate() {
        match s {
            Some(s) if s.is_final() => {}
            Some(RecipientState::Deferred {
                next_attempt_unix_ms,
                attempts,
                ..
            }) if *next_attempt_unix_ms > now_ms => {
                // Checked: a spool record's time never makes the arithmetic panic.
                let wait = Duration::from_millis(next_attempt_unix_ms - now_ms);
                let at = crate::queue::later(now, wait.min(MAX_SPOOLED_WAIT));
                let domain = domain_of(&r.address, hostname);
                let job = Job {
                    message: id,
                    recipients: Recipients::from_slice(&[i as u32]),
                    priority: class(&domain),
                    domain: names.get(&domain),
                    attempts: *attempts,
                    arrival,
                };
                intake.later.push((job, at));
            }
            _ => by_domain
                .entry(domain_of(&r.address, hostname))
                .or_default()
                .push(i as u32),
        }
    }
    let alone = intake.msg.verp;
    for (domain, recipients) in by_domain {
        let name = names.get(&domain);
        let groups: Vec<Recipients> = match alone {
            true => recipients
                .into_iter()
                .map(|i| Recipients::from_slice(&[i]))
                .collect(),
            false => vec![recipients],
        };
        for recipients in groups {
            let attempts = recipients
                .iter()
                .map(|&i| intake.progress.attempts[i as usize])
                .max()
                .unwrap_or(0);
            intake.now.push(Job {
                message: id,
                recipients,
                priority: class(&domain),
                domain: name.clone(),
                attempts,
                arrival,
            });
        }
    }
    Some(intake)
}

/// True if the message came from an authenticated client or one in `trusted`.
fn trusted(rec: &MessageRecord, trusted: &[ipnet::IpNet]) -> bool {
    if rec.auth.is_some() {
        return true;
    }
    let Ok(addr) = rec.client_addr.parse::<std::net::SocketAddr>() else {
        return false;
    };
    crate::server::relay::in_networks(trusted, addr.ip())
}

/// True when receivers' TLS policies (DANE, MTA-STS) are applied at all.
fn receiver_policies(config: &Config) -> bool {
    let p = &config.delivery.tls_policy;
    p.dane || p.mta_sts
}
