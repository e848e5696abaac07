//! What the statistics count, and by what.
//!
//! What it does: names the four kinds of row ([`Dim`]: campaign, tenant, provider, source) and
//! the counters of a row ([`Counts`]: accepted, delivered, deferred, bounced, expired,
//! complained, suppressed, and bounced per bounce class), with the rates derived from them.
//!
//! What it does not do: no storage, no time windows (`table.rs`), no locking.
//!
//! Invariants: `bounced` is the sum of the per-class counters of the same row.

use crate::shaping::BounceClass;

/// A kind of row in the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// The message's campaign.
    Campaign,
    /// The message's tenant.
    Tenant,
    /// The shaping provider of the destination (`[provider.<name>]`; `default` when none).
    Provider,
    /// The local address delivery connected from (`default`: the system's choice).
    Source,
    /// The domain of the message's `From:` field (counted at acceptance only).
    FromDomain,
}

/// Kinds of row.
pub const KINDS: usize = 5;

impl Dim {
    /// Every kind, in table order.
    pub const ALL: [Dim; KINDS] = [
        Dim::Campaign,
        Dim::Tenant,
        Dim::Provider,
        Dim::Source,
        Dim::FromDomain,
    ];

    /// `campaign`, `tenant`, `provider`, `source` or `from_domain`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dim::Campaign => "campaign",
            Dim::Tenant => "tenant",
            Dim::Provider => "provider",
            Dim::Source => "source",
            Dim::FromDomain => "from_domain",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Position in [`Dim::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Recipients accepted (counted per campaign, tenant and From domain only: provider and source
/// are known only once a destination is routed).
pub const ACCEPTED: usize = 0;
/// Recipients the next hop accepted.
pub const DELIVERED: usize = 1;
/// Attempts deferred (a recipient deferred three times counts three times).
pub const DEFERRED: usize = 2;
/// Recipients bounced by the next hop (or by a shaping rule).
pub const BOUNCED: usize = 3;
/// Recipients that expired in the queue.
pub const EXPIRED: usize = 4;
/// Complaints recorded (`Campaigns::complained`).
pub const COMPLAINED: usize = 5;
/// Recipients dropped at delivery because they are on the suppression list.
pub const SUPPRESSED: usize = 6;
/// Recipients of DKIM-signed, bulk-looking mail (with a campaign, or more recipients than
/// `dkim.bulk_warning_recipients`) without RFC 8058 one-click unsubscription.
pub const NO_ONE_CLICK: usize = 7;
/// The first per-class bounce counter; class `c` is at `CLASSES + c.index()`.
pub const CLASSES: usize = 8;
/// Counters per row.
pub const LEN: usize = CLASSES + BounceClass::ALL.len();

/// The names of the first [`CLASSES`] counters, as the API and the metrics write them.
pub const NAMES: [&str; CLASSES] = [
    "accepted",
    "delivered",
    "deferred",
    "bounced",
    "expired",
    "complained",
    "suppressed",
    "no_one_click",
];

/// The counters of one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts(pub [u64; LEN]);

impl Default for Counts {
    fn default() -> Self {
        Counts([0; LEN])
    }
}

impl Counts {
    /// Adds `other` counter by counter.
    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// Counts `n` bounces of `class` (the total and the class).
    pub fn bounce(&mut self, class: BounceClass, n: u64) {
        self.0[BOUNCED] += n;
        self.0[CLASSES + class.index()] += n;
    }

    /// True when every counter is zero.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&n| n == 0)
    }

    /// Delivered over accepted; None without accepted recipients.
    pub fn delivery_rate(&self) -> Option<f64> {
        ratio(self.0[DELIVERED], self.0[ACCEPTED])
    }

    /// Bounced over what ended at the next hop (delivered + bounced); None when nothing did.
    pub fn bounce_rate(&self) -> Option<f64> {
        ratio(self.0[BOUNCED], self.finished())
    }

    /// Complaints over delivered; None when nothing was delivered.
    pub fn complaint_rate(&self) -> Option<f64> {
        ratio(self.0[COMPLAINED], self.0[DELIVERED])
    }

    /// Recipients that ended at the next hop: delivered + bounced (what rates are taken over).
    pub fn finished(&self) -> u64 {
        self.0[DELIVERED] + self.0[BOUNCED]
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let mut c = Counts::default();
        assert_eq!(c.bounce_rate(), None);
        c.0[ACCEPTED] = 10;
        c.0[DELIVERED] = 6;
        c.bounce(BounceClass::BadMailbox, 2);
        c.0[COMPLAINED] = 3;
        assert_eq!(c.delivery_rate(), Some(0.6));
        assert_eq!(c.bounce_rate(), Some(0.25));
        assert_eq!(c.complaint_rate(), Some(0.5));
        assert_eq!(c.0[CLASSES + BounceClass::BadMailbox.index()], 2);
        for d in Dim::ALL {
            assert_eq!(Dim::parse(d.as_str()), Some(d));
        }
    }
}
