//! The `[feedback]` section of the configuration: where bounces and complaints come back to.
//!
//! What it does: names the bounce domain (whose VERP addresses bounces come back to), the
//! secret that signs those addresses and how long they stay valid, which mail is sent with a
//! VERP envelope sender (by sender domain or source pool), the other addresses whose mail is
//! read as reports (feedback loops), where reports that match nothing go, and the bounds of the
//! label book and of the Message-ID index.
//!
//! What it does not do: no reading of `secret_file` (done once at start by
//! [`super::Feedback::open`]), no report handling.
//!
//! Invariants: every key has a default and the defaults turn everything off; a VERP rule needs
//! a bounce domain and a secret (checked by [`FeedbackSection::check`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::HumanDuration;

/// The shortest secret accepted, in octets.
pub const MIN_SECRET: usize = 16;

/// `[feedback]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackSection {
    /// The domain of the VERP addresses; its mail is read as reports and never relayed.
    /// Empty: no VERP.
    pub bounce_domain: String,
    /// The local part before `+` in a VERP address.
    pub verp_local: String,
    /// The key that signs VERP tokens.
    pub secret: Option<String>,
    /// A file whose first line is that key.
    pub secret_file: Option<PathBuf>,
    /// How long a VERP address stays valid after the message was sent (whole days).
    pub verp_lifetime: HumanDuration,
    /// Sender domains (`example.com`, `*.example.com`, or `*` for every sender) whose mail is
    /// sent with a VERP envelope sender.
    pub verp_senders: Vec<String>,
    /// Source pools whose mail is sent with a VERP envelope sender.
    pub verp_pools: Vec<String>,
    /// Other addresses whose mail is read as reports (feedback loop addresses, a fixed
    /// return path).
    pub report_addresses: Vec<String>,
    /// Where a report that cannot be read or matched is forwarded; empty: it is only logged.
    pub unmatched_to: String,
    /// A complaint adds its recipient to the suppression list.
    pub suppress_complaints: bool,
    /// Accepted messages remembered by their Message-ID (in memory and on disk), for reports
    /// without a VERP address (0: none).
    pub message_id_index: usize,
    /// Distinct campaign and tenant pairs the label book numbers.
    pub max_label_pairs: usize,
}

impl Default for FeedbackSection {
    fn default() -> Self {
        FeedbackSection {
            bounce_domain: String::new(),
            verp_local: "bounce".into(),
            secret: None,
            secret_file: None,
            verp_lifetime: HumanDuration::secs(7 * 86_400),
            verp_senders: Vec::new(),
            verp_pools: Vec::new(),
            report_addresses: Vec::new(),
            unmatched_to: String::new(),
            suppress_complaints: true,
            message_id_index: 1_000_000,
            max_label_pairs: 100_000,
        }
    }
}

impl FeedbackSection {
    /// Whether reports are read at all.
    pub fn enabled(&self) -> bool {
        !self.bounce_domain.is_empty() || !self.report_addresses.is_empty()
    }

    /// The VERP lifetime in days (at least 1).
    pub fn lifetime_days(&self) -> u16 {
        let days = self.verp_lifetime.0.as_secs().div_ceil(86_400).max(1);
        u16::try_from(days).unwrap_or(u16::MAX)
    }

    /// Checks the values: `(key, problem)` for the first bad one.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, p: &str| Err((format!("feedback.{k}"), p.to_owned()));
        let d = self.bounce_domain.trim_end_matches('.');
        if !d.is_empty() && !crate::config::is_hostname(d) {
            return bad("bounce_domain", "not a domain name");
        }
        let verp = !self.verp_senders.is_empty() || !self.verp_pools.is_empty();
        if verp && d.is_empty() {
            return bad(
                "bounce_domain",
                "verp_senders and verp_pools need a bounce_domain",
            );
        }
        if !d.is_empty() {
            match (&self.secret, &self.secret_file) {
                (Some(_), Some(_)) => return bad("secret", "set secret or secret_file, not both"),
                (None, None) => {
                    return bad("secret", "a bounce_domain needs secret or secret_file");
                }
                (Some(s), None) if s.len() < MIN_SECRET => {
                    return bad("secret", &format!("at least {MIN_SECRET} octets"));
                }
                _ => {}
            }
        }
        let local_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !local_ok(&self.verp_local) {
            return bad("verp_local", "1 to 32 letters, digits, '-', '_' or '.'");
        }
        for s in &self.verp_senders {
            let name = s.strip_prefix("*.").unwrap_or(s);
            if s != "*" && !crate::config::is_hostname(name) {
                return bad(
                    "verp_senders",
                    &format!("{s:?} is not a domain, \"*.domain\" or \"*\""),
                );
            }
        }
        let mailbox = |a: &str| crate::smtp::address::parse_mailbox(a.as_bytes(), false).is_ok();
        for a in &self.report_addresses {
            if !mailbox(a) {
                return bad("report_addresses", &format!("{a:?} is not an address"));
            }
        }
        if !self.unmatched_to.is_empty() && !mailbox(&self.unmatched_to) {
            return bad("unmatched_to", "not an address");
        }
        if !self.unmatched_to.is_empty() && self.consumes(&self.unmatched_to) {
            return bad("unmatched_to", "is itself read as reports (it would loop)");
        }
        if self.max_label_pairs == 0 || self.max_label_pairs > 10_000_000 {
            return bad("max_label_pairs", "1 to 10000000");
        }
        if self.message_id_index > 100_000_000 {
            return bad("message_id_index", "at most 100000000");
        }
        Ok(())
    }

    /// Whether mail to `address` is read as a report (by the configured names alone).
    pub fn consumes(&self, address: &str) -> bool {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        let bounce = self.bounce_domain.trim_end_matches('.');
        (!bounce.is_empty() && domain.eq_ignore_ascii_case(bounce))
            || self
                .report_addresses
                .iter()
                .any(|a| a.eq_ignore_ascii_case(address))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn off_by_default_and_checked() {
        let c = Config::parse("").unwrap();
        assert!(!c.feedback.enabled());
        let c = Config::parse(
            "[feedback]\nbounce_domain = \"b.example.com\"\nsecret = \"0123456789abcdef\"\nverp_senders = [\"news.example.com\"]\n",
        )
        .unwrap();
        assert!(c.feedback.enabled());
        assert_eq!(c.feedback.lifetime_days(), 7);
        assert!(c.feedback.consumes("bounce+x@B.Example.com"));
        for (toml, key) in [
            ("verp_senders = [\"a.example\"]\n", "bounce_domain"),
            ("bounce_domain = \"b.example\"\n", "secret"),
            (
                "bounce_domain = \"b.example\"\nsecret = \"short\"\n",
                "secret",
            ),
            (
                "report_addresses = [\"not an address\"]\n",
                "report_addresses",
            ),
            (
                "report_addresses = [\"fbl@example.com\"]\nunmatched_to = \"FBL@example.com\"\n",
                "unmatched_to",
            ),
            ("verp_local = \"a+b\"\n", "verp_local"),
        ] {
            let e = Config::parse(&format!("[feedback]\n{toml}")).unwrap_err();
            assert!(
                e.to_string().contains(&format!("feedback.{key}")),
                "{toml}: {e}"
            );
        }
    }
}
