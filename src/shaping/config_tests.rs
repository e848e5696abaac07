//! Tests of the shaping file: parsing, errors, rates, MX suffixes, resolution precedence, and
//! the shipped `config/shaping.toml`.

use std::net::IpAddr;
use std::time::Duration;

use super::config::suffix_matches;
use super::*;
use crate::queue::{Limits, Rate, RetryPolicy};
use crate::tls::TlsPolicy;

const SHIPPED: &str = include_str!("../../config/shaping.toml");

fn hosts(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| s.to_string()).collect()
}

fn err(text: &str) -> String {
    match Shaping::parse(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn shipped_file_parses_and_knows_the_big_providers() {
    let s = Shaping::parse(SHIPPED).expect("shipped shaping.toml parses");
    for (mx, name) in [
        ("gmail-smtp-in.l.google.com.", "google"),
        ("aspmx2.googlemail.com", "google"),
        ("outlook-com.olc.protection.outlook.com", "microsoft"),
        ("contoso-com.mail.protection.outlook.com", "microsoft"),
        ("mta5.am0.yahoodns.net", "yahoo"),
        ("mx01.mail.icloud.com", "apple"),
        ("mx00.gmx.net", "united_internet"),
        ("mx-ha03.web.de", "united_internet"),
        ("smtp-in.orange.fr", "orange"),
        ("mx1.comcast.net", "comcast"),
    ] {
        assert_eq!(s.provider(&hosts(&[mx])), Some(name), "{mx}");
    }
    assert!(!s.rules().is_empty());
    assert!(!s.bounce_classifier().is_empty());
    let g = s.resolve("gmail.com", &hosts(&["gmail-smtp-in.l.google.com"]), None);
    assert_eq!(g.tls, Some(TlsPolicy::Required));
    assert_eq!(g.provider.as_deref(), Some("google"));
    assert_eq!(g.max_recipients_per_transaction, Some(100));
}

#[test]
fn rates_parse_in_every_unit() {
    let r = |s: &str| parse_rate(s).unwrap();
    assert_eq!(
        r("10/s"),
        Rate {
            messages: 10,
            per: Duration::from_secs(1)
        }
    );
    assert_eq!(r("100/min").per, Duration::from_secs(60));
    assert_eq!(r("100/m").per, Duration::from_secs(60));
    assert_eq!(r("5000/h").per, Duration::from_secs(3600));
    assert_eq!(r("100000/d").messages, 100_000);
    assert_eq!(r("100000/d").per, Duration::from_secs(86_400));
    assert_eq!(r(" 30 / 5m ").per, Duration::from_secs(300));
    for bad in [
        "",
        "10",
        "0/s",
        "-1/s",
        "ten/s",
        "10/fortnight",
        "10/",
        "10/0s",
    ] {
        assert!(parse_rate(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn suffixes_match_on_label_boundaries_only() {
    assert!(suffix_matches("google.com", "google.com"));
    assert!(suffix_matches("aspmx.l.google.com", "google.com"));
    assert!(suffix_matches("ASPMX.L.GOOGLE.COM.", "google.com"));
    assert!(suffix_matches("aspmx.l.google.com", "Google.Com."));
    assert!(!suffix_matches("notgoogle.com", "google.com"));
    assert!(!suffix_matches("google.com.evil.example", "google.com"));
    assert!(!suffix_matches("oogle.com", "google.com"));
    assert!(!suffix_matches("", "google.com"));
    assert!(!suffix_matches("google.com", ""));
    assert!(!suffix_matches("mx.ünïcode.com", "google.com"));
}

const LAYERED: &str = r#"
[default]
max_connections = 10
max_messages_per_connection = 100
tls = "opportunistic"

[provider.first]
mx_suffixes = ["example.net"]
max_connections = 5
message_rate = "100/s"

[provider.second]
mx_suffixes = ["mx.example.net", "other.example"]
max_connections = 3
retry_first = "10m"

[domain."Example.COM."]
max_connections = 2
tls = "required"

[source."192.0.2.10"]
max_connections = 1

[source."192.0.2.0/24"]
message_rate = "10/s"
max_connections = 7
"#;

#[test]
fn resolution_merges_default_provider_domain_source() {
    let s = Shaping::parse(LAYERED).unwrap();
    let none = s.resolve("unknown.test", &hosts(&["mx.unknown.test"]), None);
    assert_eq!(none.max_connections, Some(10));
    assert_eq!(none.message_rate, None);
    assert_eq!(none.provider, None);
    assert_eq!(none.retry_first, None);

    // Provider: the first in file order wins even though the second is more specific.
    let p = s.resolve("x.test", &hosts(&["a.mx.example.net"]), None);
    assert_eq!(p.provider.as_deref(), Some("first"));
    assert_eq!(p.max_connections, Some(5));
    assert_eq!(p.max_messages_per_connection, Some(100));
    assert_eq!(p.retry_first, None);
    // Any MX host may match.
    let p2 = s.resolve("x.test", &hosts(&["mx.x.test", "b.other.example"]), None);
    assert_eq!(p2.provider.as_deref(), Some("second"));
    assert_eq!(p2.retry_first, Some(Duration::from_secs(600)));

    // Domain over provider, case-insensitive, trailing dot ignored; provider fields kept.
    let d = s.resolve("EXAMPLE.com.", &hosts(&["mx.example.net"]), None);
    assert_eq!(d.max_connections, Some(2));
    assert_eq!(d.message_rate.map(|r| r.messages), Some(100));
    assert_eq!(d.tls, Some(TlsPolicy::Required));

    // Source over domain; the most specific network wins, regardless of file order.
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let src = s.resolve("example.com", &hosts(&["mx.example.net"]), Some(ip));
    assert_eq!(src.max_connections, Some(1));
    // Only the most specific source section applies: the /24's rate is not merged in.
    assert_eq!(src.message_rate.map(|r| r.messages), Some(100));
    let other: IpAddr = "192.0.2.99".parse().unwrap();
    let net = s.resolve("example.com", &hosts(&["mx.example.net"]), Some(other));
    assert_eq!(net.max_connections, Some(7));
    assert_eq!(net.message_rate.map(|r| r.messages), Some(10));
    let outside: IpAddr = "198.51.100.1".parse().unwrap();
    let o = s.resolve("example.com", &[], Some(outside));
    assert_eq!(o.max_connections, Some(2));
}

#[test]
fn shape_fills_global_limits_and_retry() {
    let shape = Shape {
        max_connections: Some(3),
        message_rate: Some(parse_rate("50/s").unwrap()),
        retry_first: Some(Duration::from_secs(7200)),
        ..Shape::default()
    };
    let l = shape.limits(&Limits::default());
    assert_eq!(l.max_connections, 3);
    assert_eq!(l.max_messages_per_connection, 100);
    assert_eq!(l.rate.map(|r| r.messages), Some(50));
    let global = RetryPolicy {
        first: Duration::from_secs(300),
        max: Duration::from_secs(3600),
        multiplier: 2.0,
        jitter: 0.1,
        lifetime: Duration::from_secs(5 * 86_400),
    };
    let r = shape.retry(&global);
    assert_eq!(r.first, Duration::from_secs(3600), "first is capped by max");
    assert_eq!(r.max, Duration::from_secs(3600));
    assert_eq!(r.lifetime, global.lifetime);
    assert_eq!(shape.tls_policy(TlsPolicy::Verify), TlsPolicy::Verify);
}

#[test]
fn errors_name_the_key() {
    let e = err("[default]\nmax_conections = 3\n");
    assert!(e.contains("max_conections") && e.contains("line 2"), "{e}");
    let e = err("[provider.g]\nmx_suffixes = [\"google.com\"]\nmessage_rate = \"fast\"\n");
    assert!(e.contains("line 3") && e.contains("message_rate"), "{e}");
    let e = err("[provider.g]\nmax_connections = 3\n");
    assert!(e.contains("provider.g.mx_suffixes"), "{e}");
    let e = err("[provider.g]\nmx_suffixes = [\"..bad\"]\n");
    assert!(e.contains("provider.g.mx_suffixes"), "{e}");
    let e = err("[domain.\"a.test\"]\nmx_suffixes = [\"x.com\"]\n");
    assert!(
        e.contains("mx_suffixes") && e.contains("only provider"),
        "{e}"
    );
    let e = err("[domain.\"a.test\"]\nmax_connections = 0\n");
    assert!(e.contains("domain.\"a.test\".max_connections"), "{e}");
    let e = err("[source.\"not-an-ip\"]\nmax_connections = 1\n");
    assert!(e.contains("source.\"not-an-ip\""), "{e}");
    let e = err("[default]\ntls = \"sometimes\"\n");
    assert!(e.contains("tls") && e.contains("line 2"), "{e}");
    let e = err("[default]\nretry_first = \"2h\"\nretry_max = \"1h\"\n");
    assert!(e.contains("default.retry_max"), "{e}");
    let e = err("[domain.\"A.test\"]\n[domain.\"a.test.\"]\n");
    assert!(e.contains("twice"), "{e}");
    let e = err("[[rule]]\nmatch_code = 421\naction = \"slow_down\"\n");
    assert!(e.contains("rule[0].action"), "{e}");
    let e = err("[[bounce_class]]\npattern = \"(\"\nclass = \"quota\"\n");
    assert!(e.contains("bounce_class[0].pattern"), "{e}");
    let e = err("[[bounce_class]]\npattern = \"x\"\nclass = \"full\"\n");
    assert!(e.contains("bounce_class[0].class"), "{e}");
}

#[test]
fn load_reads_a_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shaping.toml");
    std::fs::write(&path, SHIPPED).unwrap();
    assert!(Shaping::load(&path).is_ok());
    std::fs::write(&path, "[default]\nnope = 1\n").unwrap();
    let e = Shaping::load(&path).unwrap_err().to_string();
    assert!(e.contains("shaping.toml") && e.contains("nope"), "{e}");
    let missing = Shaping::load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(missing, ShapingError::Read { .. }));
}

#[test]
fn empty_file_resolves_to_nothing_set() {
    let s = Shaping::parse("").unwrap();
    assert_eq!(
        s.resolve("a.test", &hosts(&["mx.a.test"]), None),
        Shape::default()
    );
    assert!(s.rules().is_empty());
}
