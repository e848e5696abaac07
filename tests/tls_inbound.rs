//! Inbound TLS through real sockets: STARTTLS and implicit TLS with Python's `ssl`/`smtplib` as
//! independent clients, certificates chosen by SNI, the STARTTLS command-injection case, and
//! certificate reload on SIGHUP.

mod common;

use std::process::Command;

use common::certs::make_certs;
use common::{Mta, tempdir, write_config};

fn python(case: &str, addr: std::net::SocketAddr, args: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/tls_client.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(case)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{case} failed: {}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

fn tls_config(
    dir: &std::path::Path,
    extra: &str,
) -> (common::certs::TestCerts, std::path::PathBuf) {
    let certs = make_certs(dir, &[&["mx.test"], &["other.test", "*.wild.test"]]);
    let mut text = String::from(
        "[relay]\nlocal_domains = [\"local.test\"]\ntrusted_networks = []\n\
        [[routes]]\ndomain = \"local.test\"\nhosts = [\"127.0.0.1:9\"]\n[tls]\n",
    );
    for (cert, key) in &certs.leaves {
        text.push_str(&format!(
            "[[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    text.push_str(extra);
    let config = write_config(dir, "", &text);
    (certs, config)
}

#[test]
fn starttls_with_smtplib_and_sni() {
    let dir = tempdir();
    let (certs, config) = tls_config(dir.path(), "");
    let mut mta = Mta::start(dir.path(), &config);
    let ca = certs.ca.to_str().unwrap();
    let v = python("starttls", mta.addr, &[ca]);
    assert_eq!(v["cn"], "mx.test");
    assert!(
        v["version"] == "TLSv1.3" || v["version"] == "TLSv1.2",
        "{v}"
    );
    // SNI picks the second certificate, by exact name and by wildcard.
    let v = python("starttls", mta.addr, &[ca, "other.test"]);
    assert_eq!(v["cn"], "other.test");
    let v = python("starttls", mta.addr, &[ca, "a.wild.test"]);
    assert_eq!(v["cn"], "other.test");
    assert!(mta.stop().success());
    let queue = mta::spool::read_offline(&dir.path().join("spool")).expect("spool");
    assert_eq!(queue.messages.len(), 3);
    let body = String::from_utf8_lossy(&queue.messages[0].message.body).into_owned();
    assert!(body.contains("with ESMTPS id"), "{body}");
    assert!(body.contains("(using TLSv1."), "{body}");
}

#[test]
fn pipelined_commands_after_starttls_are_discarded() {
    let dir = tempdir();
    let (certs, config) = tls_config(dir.path(), "");
    let mut mta = Mta::start(dir.path(), &config);
    let v = python("inject", mta.addr, &[certs.ca.to_str().unwrap()]);
    assert!(v["rcpt"].as_str().unwrap().starts_with("503"), "{v}");
    assert!(mta.stop().success());
}

#[test]
fn without_a_certificate_starttls_is_not_offered() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    let mut mta = Mta::start(dir.path(), &config);
    let v = python("ehlo", mta.addr, &[]);
    let features: Vec<&str> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(!features.contains(&"starttls"), "{features:?}");
    assert!(!features.contains(&"auth"), "{features:?}");
    assert!(mta.stop().success());
}
