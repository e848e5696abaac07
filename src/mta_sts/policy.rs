//! MTA-STS records and policies as values (RFC 8461 3.1, 3.2, 4.1): parsing and MX matching.
//!
//! What it does: parses the `_mta-sts` TXT record (its `id`), the policy file (`version`,
//! `mode`, `mx`, `max_age`) and says whether an MX host name matches a policy's `mx` patterns.
//!
//! What it does not do: no I/O, no clock, no caching (`cache.rs`), no fetching (`fetch.rs`).
//!
//! Invariants: a parsed policy has version STSv1, a max_age of at most 31557600 s and, unless
//! its mode is `none`, at least one `mx` pattern.

use serde::{Deserialize, Serialize};

/// RFC 8461 3.2: the largest max_age (about one year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// A policy's mode (RFC 8461 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Mail goes only to matching MX hosts with a valid certificate, else it waits.
    Enforce,
    /// Failures are reported, mail is delivered as without a policy.
    Testing,
    /// The domain withdrew its policy.
    None,
}

impl Mode {
    /// The mode's name in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Its mode.
    pub mode: Mode,
    /// The MX patterns (`mail.example.com`, `*.example.net`), lower case.
    pub mx: Vec<String>,
    /// How long it may be cached, in seconds.
    pub max_age: u64,
}

/// Why a policy or record was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// A required field is absent.
    #[error("the policy has no {0}")]
    Missing(&'static str),
    /// A field has a value the RFC does not allow.
    #[error("invalid {field}: {value:?}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
}

/// The `id` of an `_mta-sts` TXT record set: exactly one record starting with `v=STSv1`
/// (others are discarded) with a valid id, else None (RFC 8461 3.1: no policy available).
pub fn record_id(records: &[String]) -> Option<String> {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| {
            let r = r.trim_start();
            r.starts_with("v=STSv1;") || r == "v=STSv1"
        })
        .collect();
    let [record] = sts.as_slice() else {
        return None;
    };
    let mut id = None;
    for field in record.split(';').skip(1) {
        let Some((k, v)) = field.trim().split_once('=') else {
            continue;
        };
        if k.trim() == "id" {
            id = Some(v.trim().to_owned());
        }
    }
    let id = id?;
    let valid = (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some(id)
}

/// Parses a policy file (RFC 8461 3.2): `key: value` lines, CRLF or LF; unknown keys are
/// ignored.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "version" => version = Some(v.to_owned()),
            "mode" => {
                mode = Some(match v {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    _ => return Err(invalid("mode", v)),
                })
            }
            "max_age" => {
                let n: u64 = v.parse().map_err(|_| invalid("max_age", v))?;
                if n > MAX_AGE_LIMIT {
                    return Err(invalid("max_age", v));
                }
                max_age = Some(n);
            }
            "mx" => {
                let host = v.trim_end_matches('.').to_ascii_lowercase();
                let name = host.strip_prefix("*.").unwrap_or(&host);
                if name.is_empty() || name.contains('*') || !name.contains('.') {
                    return Err(invalid("mx", v));
                }
                mx.push(host);
            }
            _ => {}
        }
    }
    match version.as_deref() {
        Some("STSv1") => {}
        Some(v) => return Err(invalid("version", v)),
        None => return Err(PolicyError::Missing("version")),
    }
    let mode = mode.ok_or(PolicyError::Missing("mode"))?;
    let max_age = max_age.ok_or(PolicyError::Missing("max_age"))?;
    if mode != Mode::None && mx.is_empty() {
        return Err(PolicyError::Missing("mx"));
    }
    Ok(Policy { mode, mx, max_age })
}

fn invalid(field: &'static str, value: &str) -> PolicyError {
    PolicyError::Invalid {
        field,
        value: value.chars().take(100).collect(),
    }
}

impl Policy {
    /// True when MX host `host` matches one of the patterns (RFC 8461 4.1: a `*.` pattern
    /// stands for exactly one left-most label).
    pub fn matches_mx(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => *p == host,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let r = |v: &[&str]| record_id(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            r(&["v=STSv1; id=20160831085700Z;"]),
            Some("20160831085700Z".into())
        );
        assert_eq!(r(&["v=STSv1;id=abc"]), Some("abc".into()));
        assert_eq!(r(&["other", "v=STSv1; id=x1"]), Some("x1".into()));
        assert_eq!(r(&["v=STSv1; id=a", "v=STSv1; id=b"]), None);
        assert_eq!(r(&["v=STSv1; id=bad-id"]), None);
        assert_eq!(r(&["v=STSv1;"]), None);
        assert_eq!(r(&["v=STSv2; id=a"]), None);
        assert_eq!(r(&[]), None);
    }

    #[test]
    fn policies() {
        let p = parse("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n").unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 86400);
        assert!(p.matches_mx("mail.example.com"));
        assert!(p.matches_mx("MAIL.example.com."));
        assert!(p.matches_mx("mx1.example.net"));
        assert!(!p.matches_mx("example.net"));
        assert!(!p.matches_mx("a.b.example.net"));
        assert!(!p.matches_mx("other.example.com"));
        let none = parse("version: STSv1\nmode: none\nmax_age: 10\n").unwrap();
        assert_eq!(none.mode, Mode::None);
        assert_eq!(
            parse("version: STSv1\nmode: enforce\nmax_age: 10\n"),
            Err(PolicyError::Missing("mx"))
        );
        assert!(parse("version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n").is_err());
        assert!(parse("version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n").is_err());
        assert!(parse("version: STSv1\nmode: testing\nmx: a.b\nmax_age: 99999999999\n").is_err());
        assert!(parse("version: STSv1\nmode: testing\nmx: a.b\n").is_err());
        assert!(parse("").is_err());
    }
}
