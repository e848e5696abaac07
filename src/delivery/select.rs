//! Which queued messages an operator means: a selection by queue id, recipient domain,
//! sender, age and state, and the one-line view of a selected message (`mta queue list`).
//!
//! What it does: parses nothing and decides nothing; it matches a message (its envelope, its
//! recipients' progress, whether it is held, when its next retry is due) against the criteria
//! an operator gave, all of which must hold, and builds list rows.
//!
//! What it does not do: no actions (the queue task holds, releases, deletes, requeues what
//! matches), no encoding (the admin endpoint's).
//!
//! Invariants: a selection with no criterion matches nothing unless it says `all`, so that an
//! empty request can never act on the whole queue; domains and senders compare without regard
//! to ASCII case; only recipients not yet final count for a domain.

use std::time::{Duration, Instant};

use super::messages::Entry;
use super::views::domain_of;
use crate::spool::QueueId;

/// What state a queued message is in, as `mta queue list` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageState {
    /// Routed and waiting for, or in, a connection: no retry is waiting.
    Active,
    /// At least one recipient waits for a retry.
    Deferred,
    /// Held by an operator: not delivered until released.
    Held,
}

impl MessageState {
    /// The name operators use.
    pub fn name(self) -> &'static str {
        match self {
            MessageState::Active => "active",
            MessageState::Deferred => "deferred",
            MessageState::Held => "held",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<MessageState> {
        match name {
            "active" => Some(MessageState::Active),
            "deferred" => Some(MessageState::Deferred),
            "held" | "hold" => Some(MessageState::Held),
            _ => None,
        }
    }
}

/// A sender criterion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    /// The null reverse path (`<>`: bounces and other reports).
    Null,
    /// One address.
    Address(String),
    /// Every sender of a domain.
    Domain(String),
}

impl Sender {
    /// `<>` for the null sender, `user@domain` for an address, `domain` or `@domain` for a
    /// domain.
    pub fn parse(text: &str) -> Sender {
        let t = text.trim();
        if t == "<>" || t.is_empty() {
            return Sender::Null;
        }
        let t = t.trim_start_matches('<').trim_end_matches('>');
        match t.strip_prefix('@') {
            Some(d) => Sender::Domain(d.to_ascii_lowercase()),
            None if t.contains('@') => Sender::Address(t.to_owned()),
            None => Sender::Domain(t.to_ascii_lowercase()),
        }
    }

    fn matches(&self, reverse_path: &str) -> bool {
        match self {
            Sender::Null => reverse_path.is_empty(),
            Sender::Address(a) => reverse_path.eq_ignore_ascii_case(a),
            Sender::Domain(d) => reverse_path
                .rsplit_once('@')
                .is_some_and(|(_, rd)| rd.eq_ignore_ascii_case(d)),
        }
    }
}

/// The criteria; every one given must hold.
#[derive(Clone, Debug, Default)]
pub struct Select {
    /// Everything (needed when no other criterion is given).
    pub all: bool,
    /// These queue ids.
    pub ids: Vec<u64>,
    /// A recipient domain (of a recipient not yet final).
    pub domain: Option<String>,
    /// The sender.
    pub sender: Option<Sender>,
    /// At least this old.
    pub min_age: Option<Duration>,
    /// In this state.
    pub state: Option<MessageState>,
}

impl Select {
    /// Whether any criterion (or `all`) was given.
    pub fn is_given(&self) -> bool {
        self.all
            || !self.ids.is_empty()
            || self.domain.is_some()
            || self.sender.is_some()
            || self.min_age.is_some()
            || self.state.is_some()
    }

    /// Whether message `e` in state `state` matches.
    pub fn matches(&self, e: &Entry, state: MessageState, hostname: &str) -> bool {
        if !self.is_given() {
            return false;
        }
        let rec = &e.msg.record;
        if !self.ids.is_empty() && !self.ids.contains(&rec.id) {
            return false;
        }
        if let Some(s) = &self.sender
            && !s.matches(&rec.reverse_path)
        {
            return false;
        }
        if let Some(d) = &self.domain {
            let mut pending = rec
                .recipients
                .iter()
                .zip(&e.progress.done)
                .filter(|(_, done)| !**done);
            if !pending.any(|(r, _)| domain_of(&r.address, hostname).eq_ignore_ascii_case(d)) {
                return false;
            }
        }
        if let Some(age) = self.min_age
            && e.msg.arrival.elapsed() < age
        {
            return false;
        }
        self.state.is_none_or(|s| s == state)
    }

    /// What the selection says, for the event log: `domain=example.com sender=<>`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.all {
            parts.push("all".to_owned());
        }
        for id in &self.ids {
            parts.push(format!("id={}", QueueId(*id)));
        }
        if let Some(d) = &self.domain {
            parts.push(format!("domain={d}"));
        }
        match &self.sender {
            Some(Sender::Null) => parts.push("sender=<>".to_owned()),
            Some(Sender::Address(a)) => parts.push(format!("sender={a}")),
            Some(Sender::Domain(d)) => parts.push(format!("sender=@{d}")),
            None => {}
        }
        if let Some(a) = self.min_age {
            parts.push(format!("min_age={}s", a.as_secs()));
        }
        if let Some(s) = self.state {
            parts.push(format!("state={}", s.name()));
        }
        parts.join(" ")
    }
}

/// One queued message, as `mta queue list` shows it.
#[derive(Clone, Debug)]
pub struct ListRow {
    /// Queue id.
    pub id: QueueId,
    /// State.
    pub state: MessageState,
    /// Envelope sender (empty for the null sender).
    pub sender: String,
    /// Size in octets.
    pub size: usize,
    /// Arrival, Unix milliseconds.
    pub arrival_unix_ms: u64,
    /// Age.
    pub age: Duration,
    /// The next retry, when one waits.
    pub next_attempt_in: Option<Duration>,
    /// Recipients not yet final, with their last reply.
    pub recipients: Vec<(String, String)>,
}

/// The list row of message `e`; `next` is its earliest waiting retry.
pub fn row(e: &Entry, state: MessageState, next: Option<Instant>, now: Instant) -> ListRow {
    let rec = &e.msg.record;
    ListRow {
        id: QueueId(rec.id),
        state,
        sender: rec.reverse_path.clone(),
        size: e.msg.size,
        arrival_unix_ms: rec.arrival_unix_ms,
        age: e.msg.arrival.elapsed(),
        next_attempt_in: next.map(|t| t.saturating_duration_since(now)),
        recipients: rec
            .recipients
            .iter()
            .enumerate()
            .filter(|(i, _)| !e.progress.done[*i])
            .map(|(i, r)| (r.address.clone(), e.progress.last[i].clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_parse_as_operators_write_them() {
        assert_eq!(Sender::parse("<>"), Sender::Null);
        assert_eq!(
            Sender::parse("News@Example.com"),
            Sender::Address("News@Example.com".into())
        );
        assert_eq!(
            Sender::parse("@Example.COM"),
            Sender::Domain("example.com".into())
        );
        assert_eq!(
            Sender::parse("example.com"),
            Sender::Domain("example.com".into())
        );
        assert!(Sender::parse("<a@b.test>").matches("A@B.test"));
        assert!(Sender::Domain("b.test".into()).matches("x@B.TEST"));
        assert!(!Sender::Domain("b.test".into()).matches("x@sub.b.test"));
        assert!(Sender::Null.matches(""));
        assert!(!Sender::Null.matches("a@b.test"));
    }

    #[test]
    fn an_empty_selection_is_not_everything() {
        assert!(!Select::default().is_given());
        let all = Select {
            all: true,
            ..Select::default()
        };
        assert!(all.is_given());
        assert_eq!(all.describe(), "all");
        let some = Select {
            domain: Some("x.test".into()),
            sender: Some(Sender::Null),
            state: Some(MessageState::Held),
            ..Select::default()
        };
        assert_eq!(some.describe(), "domain=x.test sender=<> state=held");
    }
}
