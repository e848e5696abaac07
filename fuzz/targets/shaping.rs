//! Fuzz body: the shaping file (TOML text into `Shaping::parse`) and what a loaded file is
//! asked at run time.
//!
//! Checks: no panic on any text; a file that loads answers `resolve`, `provider`, `limits`,
//! the rule engine and the bounce classifier for a few destinations and replies.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use mta::queue::Limits;
use mta::shaping::Shaping;
use mta::smtp::{EnhancedStatus, Reply};

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(shaping) = Shaping::parse(text) else {
        return;
    };
    let mx = [
        "mx1.gmail.test".to_owned(),
        "a.mx.example.com".to_owned(),
        String::new(),
    ];
    let source = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for domain in ["gmail.com", "example.com", "", "a.b.c.d.e"] {
        for hosts in [&mx[..], &mx[..1], &[]] {
            let shape = shaping.resolve(domain, hosts, source);
            let _ = shape.limits(&Limits::default());
            let _ = shaping.provider(hosts);
        }
    }
    let mut engine = shaping.rule_engine();
    let now = Instant::now();
    let replies = [
        Reply::new(421, EnhancedStatus::new(4, 7, 0), "try again later"),
        Reply::new(550, EnhancedStatus::new(5, 7, 1), "blocked for spam"),
        Reply::new(451, EnhancedStatus::new(4, 4, 2), "rate limited"),
        Reply::multiline(452, None, vec!["too many".into(), String::new()]),
    ];
    for (i, r) in replies.iter().cycle().take(40).enumerate() {
        let at = now + Duration::from_secs(i as u64);
        let _ = engine.observe("example.com", r, at);
        let _ = engine.current("example.com", at);
        let _ = engine.in_force("example.com", at);
        let _ = shaping
            .bounce_classifier()
            .classify(r.code, r.status, &r.text());
    }
    engine.prune(now + Duration::from_secs(86_400 * 365));
}
