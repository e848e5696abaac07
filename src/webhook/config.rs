//! `[[webhooks]]`: the endpoints that event-log lines are POSTed to.
//!
//! What it does: the settings of one hook with their defaults, and [`WebhookConfig::check`],
//! which refuses what cannot work (names that are not file-name safe, URLs that are not
//! `http://` or `https://`, a missing or short secret, batch and timing values out of range).
//!
//! What it does not do: no reading of `secret_file` (the hook reads it when it starts, and
//! `mta check-config` does too), no network.
//!
//! Invariants: a checked hook has a unique name of 1-64 `[A-Za-z0-9_-]` (it names the cursor
//! file and the metrics label), exactly one of `secret` and `secret_file`, and
//! `retry_min <= retry_max`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::HumanDuration;

/// One `[[webhooks]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The hook's name: its cursor file (`<log.dir>/webhooks/<name>.cursor`), its metrics label.
    pub name: String,
    /// Where batches are POSTed: `http://...` or `https://...`.
    pub url: String,
    /// The HMAC-SHA256 key the batches are signed with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A file whose first line is the key (instead of `secret`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Event types sent (`Delivery`, `Bounce`, ...); empty = every type.
    pub events: Vec<String>,
    /// Tenants sent (the line's `tenant` field; `""` stands for lines without one); empty =
    /// every line.
    pub tenants: Vec<String>,
    /// At most this many events per POST.
    pub batch_size: usize,
    /// A batch that is not full is sent once its first event waited this long.
    pub batch_wait: HumanDuration,
    /// The longest one POST may take, connect to last byte of the answer.
    pub timeout: HumanDuration,
    /// The first wait after a failed POST; doubled after each further failure ...
    pub retry_min: HumanDuration,
    /// ... up to this.
    pub retry_max: HumanDuration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            name: String::new(),
            url: String::new(),
            secret: None,
            secret_file: None,
            events: Vec::new(),
            tenants: Vec::new(),
            batch_size: 100,
            batch_wait: HumanDuration::secs(1),
            timeout: HumanDuration::secs(10),
            retry_min: HumanDuration::secs(1),
            retry_max: HumanDuration::secs(300),
        }
    }
}

/// The most events one POST may carry.
pub const MAX_BATCH: usize = 10_000;

/// The shortest secret accepted, in octets.
pub const MIN_SECRET: usize = 16;

impl WebhookConfig {
    /// Checks `hooks` (the whole `[[webhooks]]` array); the error is `(key, problem)`.
    pub fn check(hooks: &[WebhookConfig]) -> Result<(), (String, String)> {
        for (i, h) in hooks.iter().enumerate() {
            let key = |k: &str| format!("webhooks[{i}].{k}");
            if h.name.is_empty()
                || h.name.len() > 64
                || !h
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err((key("name"), "1-64 letters, digits, '-' or '_'".into()));
            }
            if hooks[..i].iter().any(|o| o.name == h.name) {
                return Err((key("name"), format!("{:?} is used twice", h.name)));
            }
            check_url(&h.url).map_err(|p| (key("url"), p))?;
            match (&h.secret, &h.secret_file) {
                (Some(_), Some(_)) => {
                    return Err((key("secret"), "set secret or secret_file, not both".into()));
                }
                (None, None) => {
                    return Err((key("secret"), "set secret or secret_file".into()));
                }
                (Some(s), None) if s.len() < MIN_SECRET => {
                    return Err((key("secret"), format!("at least {MIN_SECRET} octets")));
                }
                _ => {}
            }
            for t in &h.events {
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err((key("events"), format!("{t:?} is not an event type")));
                }
            }
            if !(1..=MAX_BATCH).contains(&h.batch_size) {
                return Err((key("batch_size"), format!("must be from 1 to {MAX_BATCH}")));
            }
            let within =
                |d: HumanDuration, min: Duration, max: Duration| (min..=max).contains(&d.0);
            if !within(h.batch_wait, Duration::ZERO, Duration::from_secs(3600)) {
                return Err((key("batch_wait"), "at most 1h".into()));
            }
            if !within(h.timeout, Duration::from_secs(1), Duration::from_secs(300)) {
                return Err((key("timeout"), "must be from 1s to 5m".into()));
            }
            if !within(
                h.retry_min,
                Duration::from_millis(10),
                Duration::from_secs(3600),
            ) {
                return Err((key("retry_min"), "must be from 10ms to 1h".into()));
            }
            if !within(h.retry_max, h.retry_min.0, Duration::from_secs(86_400)) {
                return Err((key("retry_max"), "must be from retry_min to 1d".into()));
            }
        }
        Ok(())
    }
}

/// An absolute `http://` or `https://` URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{url:?}: the scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(name: &str) -> WebhookConfig {
        WebhookConfig {
            name: name.into(),
            url: "https://hooks.example.com/mta".into(),
            secret: Some("0123456789abcdef".into()),
            ..WebhookConfig::default()
        }
    }

    #[test]
    fn accepts_a_plain_hook() {
        assert_eq!(WebhookConfig::check(&[hook("a"), hook("b-2")]), Ok(()));
    }

    #[test]
    fn refuses_what_cannot_work() {
        let cases: Vec<(WebhookConfig, &str)> = vec![
            (hook(""), "name"),
            (hook("a/b"), "name"),
            (
                WebhookConfig {
                    url: "ftp://x/".into(),
                    ..hook("a")
                },
                "url",
            ),
            (
                WebhookConfig {
                    url: "/relative".into(),
                    ..hook("a")
                },
                "url",
            ),
            (
                WebhookConfig {
                    secret: None,
                    ..hook("a")
                },
                "secret",
            ),
            (
                WebhookConfig {
                    secret: Some("short".into()),
                    ..hook("a")
                },
                "secret",
            ),
            (
                WebhookConfig {
                    secret_file: Some("/k".into()),
                    ..hook("a")
                },
                "secret",
            ),
            (
                WebhookConfig {
                    events: vec!["a b".into()],
                    ..hook("a")
                },
                "events",
            ),
            (
                WebhookConfig {
                    batch_size: 0,
                    ..hook("a")
                },
                "batch_size",
            ),
            (
                WebhookConfig {
                    timeout: HumanDuration::secs(0),
                    ..hook("a")
                },
                "timeout",
            ),
            (
                WebhookConfig {
                    retry_min: HumanDuration::secs(10),
                    retry_max: HumanDuration::secs(5),
                    ..hook("a")
                },
                "retry_max",
            ),
        ];
        for (h, field) in cases {
            let err = WebhookConfig::check(std::slice::from_ref(&h)).expect_err(field);
            assert_eq!(err.0, format!("webhooks[0].{field}"), "{h:?}: {err:?}");
        }
        let err = WebhookConfig::check(&[hook("a"), hook("a")]).unwrap_err();
        assert_eq!(err.0, "webhooks[1].name");
    }
}
