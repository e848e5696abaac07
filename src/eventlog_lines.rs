//! The event log lines other than deliveries and reports: `Reception`, `Rejection`,
//! `Operator`, `CampaignPaused`/`CampaignResumed`, `BulkWithoutUnsubscribe`, `Suppression` and
//! `TlsReport`.
//!
//! What it does: one payload type and one writer per line type, formatting straight into the
//! shard's buffer.
//!
//! What it does not do: no buffering, rotation or ids of its own (the parent module's).
//!
//! Invariants: field names and meanings are those of `docs/LOG_SCHEMA.md`.

use std::io::Write;

use super::{EventLog, field, json, labels};

/// A message accepted (`Reception`).
pub struct Reception<'a> {
    /// Queue id.
    pub queue_id: &'a str,
    /// Envelope sender.
    pub sender: &'a str,
    /// Recipients.
    pub recipients: &'a [&'a str],
    /// Message size as spooled.
    pub size: usize,
    /// Client IP address.
    pub client: &'a str,
    /// EHLO/HELO name.
    pub helo: &'a str,
    /// TLS version and cipher, empty for plaintext.
    pub tls: &'a str,
    /// Authenticated user, empty if none.
    pub auth: &'a str,
    /// The message's `Message-ID` (`<...>`), empty if it has none.
    pub message_id: &'a str,
    /// The message's campaign, empty without one (then not written).
    pub campaign: &'a str,
    /// The message's tenant, empty without one (then not written).
    pub tenant: &'a str,
    /// The priority class a rule chose at reception; empty when none did.
    pub priority: &'a str,
}

/// A recipient or message refused by the server (`Rejection`).
pub struct Rejection<'a> {
    /// `rcpt` or `data`.
    pub stage: &'a str,
    /// Envelope sender.
    pub sender: &'a str,
    /// The refused recipient (`rcpt`), empty at `data`.
    pub recipient: &'a str,
    /// The reply sent.
    pub reply: &'a str,
    /// Client IP address.
    pub client: &'a str,
}

/// A state-changing action of an operator on one shard (`Operator`).
pub struct Operator<'a> {
    /// What: `hold`, `release`, `delete`, `bounce`, `requeue`, `flush`, `suspend`, `resume`,
    /// `pause`, `unpause`.
    pub action: &'a str,
    /// On what: a selection (`domain=example.com`), a queue id or a destination.
    pub target: &'a str,
    /// Who: the admin client's address and how it was let in (`127.0.0.1 network`,
    /// `192.0.2.7 token`).
    pub by: &'a str,
    /// Messages acted on (on this shard).
    pub messages: usize,
    /// Their recipients not yet final.
    pub recipients: usize,
}

/// A change to the suppression list (`Suppression`).
pub struct Suppression<'a> {
    /// `add` or `remove`.
    pub action: &'a str,
    /// The address (normalised).
    pub recipient: &'a str,
    /// The tenant whose list it is, empty for the global list.
    pub tenant: &'a str,
    /// `manual`, `hard_bounce` or `complaint`.
    pub kind: &'a str,
    /// The reason given.
    pub reason: &'a str,
    /// Who: the operator as in `Operator` events, or `delivery` for a bounce.
    pub by: &'a str,
    /// When the entry stops counting (unix seconds), 0 = never.
    pub expires: u64,
}

impl<'a> Suppression<'a> {
    /// The line for `action` (`add` or `remove`) on list entry `e`.
    pub fn of(action: &'a str, e: &'a crate::suppression::Entry) -> Self {
        Suppression {
            action,
            recipient: &e.address,
            tenant: &e.tenant,
            kind: e.kind.as_str(),
            reason: &e.reason,
            by: &e.by,
            expires: e.expires,
        }
    }
}

/// A TLS report (RFC 8460) sent or given up (`TlsReport`).
pub struct TlsReport<'a> {
    /// The policy domain reported on.
    pub domain: &'a str,
    /// The report's `report-id`.
    pub report_id: &'a str,
    /// Where it went: a `mailto:` or `https:` address.
    pub rua: &'a str,
    /// `queued` (by mail), `sent` (uploaded) or `failed`.
    pub outcome: &'a str,
    /// Why it failed; empty otherwise.
    pub error: &'a str,
    /// The queue id of the report message; empty for uploads.
    pub queue_id: &'a str,
    /// Successful and failed sessions in the report.
    pub sessions: (u64, u64),
    /// Bytes of the gzipped report.
    pub size: usize,
}

impl EventLog {
    /// Appends a `Reception`.
    pub fn reception(&self, r: &Reception<'_>) {
        let mut b = self.begin("Reception");
        field(&mut b, "queue_id", r.queue_id);
        field(&mut b, "sender", r.sender);
        b.extend_from_slice(b",\"recipients\":[");
        for (i, x) in r.recipients.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            json(&mut b, x);
        }
        let _ = write!(b, "],\"size\":{}", r.size);
        for (key, value) in [
            ("client", r.client),
            ("helo", r.helo),
            ("tls", r.tls),
            ("auth", r.auth),
            ("message_id", r.message_id),
            ("priority", r.priority),
        ] {
            field(&mut b, key, value);
        }
        labels(&mut b, r.campaign, r.tenant);
        self.end(b);
    }

    /// Appends a `Rejection`.
    pub fn rejection(&self, r: &Rejection<'_>) {
        let mut b = self.begin("Rejection");
        for (key, value) in [
            ("stage", r.stage),
            ("sender", r.sender),
            ("recipient", r.recipient),
            ("reply", r.reply),
            ("client", r.client),
        ] {
            field(&mut b, key, value);
        }
        self.end(b);
    }

    /// Appends an `Operator` event.
    pub fn operator(&self, o: &Operator<'_>) {
        let mut b = self.begin("Operator");
        for (key, value) in [("action", o.action), ("target", o.target), ("by", o.by)] {
            field(&mut b, key, value);
        }
        let _ = write!(
            b,
            ",\"messages\":{},\"recipients\":{}",
            o.messages, o.recipients
        );
        self.end(b);
    }

    /// Appends a `CampaignPaused` or `CampaignResumed` event (`paused`) about campaign or
    /// tenant (`kind`) `name`, with why and by whom.
    pub fn campaign(&self, paused: bool, kind: &str, name: &str, reason: &str, by: &str) {
        let mut b = self.begin(match paused {
            true => "CampaignPaused",
            false => "CampaignResumed",
        });
        for (key, value) in [
            ("kind", kind),
            ("name", name),
            ("reason", reason),
            ("by", by),
        ] {
            field(&mut b, key, value);
        }
        self.end(b);
    }

    /// Appends a `BulkWithoutUnsubscribe` event: message `queue_id` (from `from_domain`, of
    /// `campaign` and `tenant`, to `recipients` recipients) is signed and looks like bulk mail
    /// but offers no RFC 8058 one-click unsubscription.
    pub fn bulk_without_unsubscribe(
        &self,
        queue_id: &str,
        from_domain: &str,
        recipients: usize,
        campaign: &str,
        tenant: &str,
    ) {
        let mut b = self.begin("BulkWithoutUnsubscribe");
        field(&mut b, "queue_id", queue_id);
        field(&mut b, "from_domain", from_domain);
        let _ = write!(b, ",\"recipients\":{recipients}");
        labels(&mut b, campaign, tenant);
        self.end(b);
    }

    /// Appends a `Suppression` event.
    pub fn suppression(&self, s: &Suppression<'_>) {
        let mut b = self.begin("Suppression");
        for (key, value) in [
            ("action", s.action),
            ("recipient", s.recipient),
            ("tenant", s.tenant),
            ("kind", s.kind),
            ("reason", s.reason),
            ("by", s.by),
        ] {
            field(&mut b, key, value);
        }
        let _ = write!(b, ",\"expires_unix\":{}", s.expires);
        self.end(b);
    }

    /// Appends a `TlsReport` event.
    pub fn tls_report(&self, r: &TlsReport<'_>) {
        let mut b = self.begin("TlsReport");
        for (key, value) in [
            ("domain", r.domain),
            ("report_id", r.report_id),
            ("rua", r.rua),
            ("outcome", r.outcome),
            ("error", r.error),
            ("queue_id", r.queue_id),
        ] {
            field(&mut b, key, value);
        }
        let _ = write!(
            b,
            ",\"successful_sessions\":{},\"failed_sessions\":{},\"size\":{}",
            r.sessions.0, r.sessions.1, r.size
        );
        self.end(b);
    }
}
