//! Bounce classes: what kind of failure a reply reports, for logs, metrics and list hygiene.
//!
//! What it does: [`classify`] maps a reply code, its RFC 3463 enhanced status and its text to a
//! [`BounceClass`] (the status first, then words of the text for statuses that say little, such
//! as `x.0.0`, `x.5.x` or none); a [`BounceClassifier`] checks the shaping file's
//! `[[bounce_class]]` patterns before that.
//!
//! What it does not do: no decision about the recipient's fate (that is
//! `crate::delivery::classify`), no I/O, no suppression lists.
//!
//! Invariants: total and deterministic: every input gets exactly one class, `Unknown` when
//! nothing says more; configured patterns are tried in file order and the first match wins.

use std::fmt;

use regex::Regex;
use serde::Deserialize;

use super::values::ShapingError;
use crate::smtp::EnhancedStatus;

/// The kind of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BounceClass {
    /// The mailbox does not exist or is disabled (x.1.1, x.1.3, x.1.6, 5.2.1).
    BadMailbox,
    /// The domain does not exist or accepts no mail (x.1.2, x.1.10 null MX).
    BadDomain,
    /// Refused by policy other than spam: relaying, authentication, DMARC/SPF (x.7.x, x.1.7/8).
    Policy,
    /// Refused as spam or for the sender's reputation: block lists, complaints, volume.
    PolicySpam,
    /// The mailbox is full or over its receiving rate (x.2.2, 4.2.1).
    Quota,
    /// Delivery could not be routed or the connection failed (x.4.x).
    Routing,
    /// The message itself: size, format, content, malware (x.6.x, x.2.3, x.3.4).
    Content,
    /// TLS required or failed (x.7.4, x.7.5, x.7.10, x.7.11, TLS words).
    Tls,
    /// Nothing says more.
    Unknown,
}

impl BounceClass {
    /// Every class.
    pub const ALL: [BounceClass; 9] = [
        BounceClass::BadMailbox,
        BounceClass::BadDomain,
        BounceClass::Policy,
        BounceClass::PolicySpam,
        BounceClass::Quota,
        BounceClass::Routing,
        BounceClass::Content,
        BounceClass::Tls,
        BounceClass::Unknown,
    ];

    /// Position in [`BounceClass::ALL`] (for metric arrays).
    pub fn index(self) -> usize {
        BounceClass::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or(BounceClass::ALL.len() - 1)
    }

    /// The snake_case name used in logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            BounceClass::BadMailbox => "bad_mailbox",
            BounceClass::BadDomain => "bad_domain",
            BounceClass::Policy => "policy",
            BounceClass::PolicySpam => "policy_spam",
            BounceClass::Quota => "quota",
            BounceClass::Routing => "routing",
            BounceClass::Content => "content",
            BounceClass::Tls => "tls",
            BounceClass::Unknown => "unknown",
        }
    }

    /// The class named `s` (its [`as_str`](Self::as_str) name).
    pub fn from_name(s: &str) -> Option<BounceClass> {
        BounceClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for BounceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const TLS_WORDS: &[&str] = &[
    "tls",
    "ssl",
    "encryption",
    "encrypted",
    "certificate",
    "cipher",
];
const DOMAIN_WORDS: &[&str] = &[
    "domain not found",
    "domain does not exist",
    "no such domain",
    "host not found",
    "host unknown",
    "unrouteable address",
    "nxdomain",
    "null mx",
    "does not accept mail",
];
const MAILBOX_WORDS: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "no such recipient",
    "unknown recipient",
    "recipient unknown",
    "invalid recipient",
    "recipient not found",
    "user not found",
    "mailbox not found",
    "mailbox unavailable",
    "no mailbox",
    "does not exist",
    "address rejected",
    "account disabled",
    "account has been disabled",
    "inactive",
    "doesn't have a",
];
const QUOTA_WORDS: &[&str] = &[
    "quota",
    "mailbox full",
    "mailbox is full",
    "insufficient storage",
    "out of storage",
    "storage allocation",
    "receiving mail at a rate",
];
const SPAM_WORDS: &[&str] = &[
    "spam",
    "blocklist",
    "blacklist",
    "block list",
    "black list",
    "blocked using",
    "listed at",
    "banned sending ip",
    "reputation",
    "rbl",
    "complaint",
    "unsolicited",
    "unexpected volume",
    "junk",
];
const CONTENT_WORDS: &[&str] = &[
    "message too large",
    "message too big",
    "size exceeds",
    "exceeds size",
    "size limit",
    "virus",
    "malware",
    "attachment",
    "content rejected",
    "message content",
];
const POLICY_WORDS: &[&str] = &[
    "policy",
    "not permitted",
    "relay",
    "authentication required",
    "dmarc",
    "spf",
    "dkim",
    "denied",
];
const ROUTING_WORDS: &[&str] = &[
    "timed out",
    "timeout",
    "connection refused",
    "no route",
    "loop",
    "too many hops",
];

/// The class of a failure with `status` whose reply or diagnostic text is `diagnostic`
/// (starting with the reply code when it has one): the configured patterns of `classifier`
/// first when there is one, else [`classify`].
pub fn classify_failure(
    classifier: Option<&BounceClassifier>,
    status: EnhancedStatus,
    diagnostic: &str,
) -> BounceClass {
    let code = diagnostic
        .get(..3)
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(if status.class == 5 { 550 } else { 450 });
    match classifier {
        Some(c) => c.classify(code, Some(status), diagnostic),
        None => classify(code, Some(status), diagnostic),
    }
}

/// Classifies a failure reply: its enhanced status (or one at the start of `text` when there
/// is none), then words of `text`, then the bare reply code.
pub fn classify(reply_code: u16, status: Option<EnhancedStatus>, text: &str) -> BounceClass {
    let lower = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let status = status.or_else(|| {
        text.split_whitespace()
            .next()
            .and_then(|t| t.parse::<EnhancedStatus>().ok())
    });
    if let Some(st) = status
        && st.class != 2
        && let Some(c) = by_status(st, &has)
    {
        return c;
    }
    by_text(&has).unwrap_or(match reply_code {
        552 => BounceClass::Quota,
        _ => BounceClass::Unknown,
    })
}

/// What the enhanced status alone (with a few words for x.4.x and x.7.x) says.
fn by_status(st: EnhancedStatus, has: &dyn Fn(&[&str]) -> bool) -> Option<BounceClass> {
    use BounceClass::*;
    Some(match (st.subject, st.detail) {
        (1, 0 | 1 | 3 | 6) => BadMailbox,
        (1, 2 | 10) => BadDomain,
        (1, 7 | 8) => Policy,
        (2, 1) if st.class == 5 => BadMailbox,
        (2, 1 | 2) => Quota,
        (2, 3) | (3, 4) => Content,
        (4, _) if has(DOMAIN_WORDS) => BadDomain,
        (4, _) => Routing,
        (6, _) => Content,
        (7, 4 | 5 | 10 | 11) => Tls,
        (7, _) if has(TLS_WORDS) => Tls,
        (7, _) if has(SPAM_WORDS) => PolicySpam,
        (7, _) => Policy,
        _ => return None,
    })
}

/// What the words of the text say.
fn by_text(has: &dyn Fn(&[&str]) -> bool) -> Option<BounceClass> {
    use BounceClass::*;
    [
        (TLS_WORDS, Tls),
        (DOMAIN_WORDS, BadDomain),
        (MAILBOX_WORDS, BadMailbox),
        (QUOTA_WORDS, Quota),
        (SPAM_WORDS, PolicySpam),
        (CONTENT_WORDS, Content),
        (POLICY_WORDS, Policy),
        (ROUTING_WORDS, Routing),
    ]
    .into_iter()
    .find(|(w, _)| has(w))
    .map(|(_, c)| c)
}

/// A `[[bounce_class]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBounceClass {
    pattern: String,
    class: String,
}

/// [`classify`] with configured text patterns tried first.
#[derive(Clone, Debug, Default)]
pub struct BounceClassifier {
    patterns: Vec<(Regex, BounceClass)>,
}

impl BounceClassifier {
    /// Validates `[[bounce_class]]` entries.
    pub(super) fn from_raw(raw: Vec<RawBounceClass>) -> Result<Self, ShapingError> {
        let mut patterns = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let re = Regex::new(&r.pattern).map_err(|e| {
                ShapingError::invalid(format!("bounce_class[{i}].pattern"), e.to_string())
            })?;
            let class = BounceClass::from_name(&r.class).ok_or_else(|| {
                let names: Vec<_> = BounceClass::ALL.iter().map(|c| c.as_str()).collect();
                ShapingError::invalid(
                    format!("bounce_class[{i}].class"),
                    format!("{:?}: expected one of {}", r.class, names.join(", ")),
                )
            })?;
            patterns.push((re, class));
        }
        Ok(BounceClassifier { patterns })
    }

    /// The class of a failure: the first configured pattern matching `text`, else
    /// [`classify`].
    pub fn classify(
        &self,
        reply_code: u16,
        status: Option<EnhancedStatus>,
        text: &str,
    ) -> BounceClass {
        self.patterns
            .iter()
            .find(|(re, _)| re.is_match(text))
            .map_or_else(|| classify(reply_code, status, text), |(_, c)| *c)
    }

    /// Number of configured patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether no patterns are configured.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}
