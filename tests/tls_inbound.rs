//! Inbound TLS through real sockets: STARTTLS and implicit TLS with Python's `ssl`/`smtplib` as
//! independent clients, certificates chosen by SNI, the STARTTLS command-injection case, and
//! certificate reload on SIGHUP.

mod common;

use std::process::Command;

use common::certs::make_certs;
use common::{Mta, tempdir, users_file, write_config};

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

fn submission_setup() -> (tempfile::TempDir, common::certs::TestCerts, Mta) {
    let dir = tempdir();
    let users = users_file(dir.path(), "alice", "s3cret pass");
    let extra = format!(
        "[auth]\nusers_file = \"{}\"\nfailure_delay = \"10ms\"\nmax_failures = 3\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nmode = \"submission\"\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nmode = \"submissions\"\n",
        users.display()
    );
    let (certs, config) = tls_config(dir.path(), &extra);
    let mta = Mta::start(dir.path(), &config);
    assert_eq!(mta.addrs.len(), 3);
    (dir, certs, mta)
}

#[test]
fn submission_and_submissions_with_auth() {
    let (dir, certs, mut mta) = submission_setup();
    let ca = certs.ca.to_str().unwrap();
    python("submission", mta.addrs[1], &[ca, "alice", "s3cret pass"]);
    let v = python("implicit", mta.addrs[2], &[ca, "alice", "s3cret pass"]);
    assert_eq!(v["mail_without_auth"], 530);
    assert_eq!(v["sent"], true);
    assert!(v["auth"].as_str().unwrap().contains("PLAIN"), "{v}");
    // The relay port never offers AUTH in plaintext, and refuses relaying to other domains.
    let v = python("ehlo", mta.addrs[0], &[]);
    assert!(
        !v["features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "auth")
    );
    assert!(mta.stop().success());
    let queue = mta::spool::read_offline(&dir.path().join("spool")).expect("spool");
    assert_eq!(queue.messages.len(), 2);
    for m in &queue.messages {
        assert_eq!(m.message.auth.as_deref(), Some("alice"));
        assert!(m.message.tls.as_deref().unwrap().starts_with("TLSv1."));
        let body = String::from_utf8_lossy(&m.message.body).into_owned();
        assert!(body.contains("(authenticated sender: alice)"), "{body}");
        assert!(body.contains("with ESMTPSA id"), "{body}");
    }
}

#[test]
fn starttls_forgets_a_plaintext_login() {
    let dir = tempdir();
    let users = users_file(dir.path(), "alice", "s3cret pass");
    let extra = format!(
        "[auth]\nusers_file = \"{}\"\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nmode = \"submission\"\nauth_plaintext = true\n",
        users.display()
    );
    let (certs, config) = tls_config(dir.path(), &extra);
    let mut mta = Mta::start(dir.path(), &config);
    let ca = certs.ca.to_str().unwrap();
    let v = python(
        "auth_then_starttls",
        mta.addrs[1],
        &[ca, "alice", "s3cret pass"],
    );
    assert_eq!(v["mail_after_starttls"], 530, "{v}");
    assert_eq!(v["auth_inside_tls"], 235, "{v}");
    assert!(mta.stop().success());
}

#[test]
fn wrong_passwords_are_refused_then_throttled() {
    let (_dir, certs, mut mta) = submission_setup();
    let ca = certs.ca.to_str().unwrap();
    let v = python("bad_password", mta.addrs[1], &[ca, "alice", "5"]);
    let codes: Vec<u64> = v["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(codes, [535, 535, 535, 454, 454]);
    // Throttled: even the right password is refused now.
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/tls_client.py"
        ))
        .args([
            "submission",
            "127.0.0.1",
            &mta.addrs[1].port().to_string(),
            ca,
            "alice",
            "s3cret pass",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(mta.stop().success());
}

#[test]
fn sighup_reloads_certificates() {
    let dir = tempdir();
    let (certs, config) = tls_config(dir.path(), "");
    let mut mta = Mta::start(dir.path(), &config);
    let ca = certs.ca.to_str().unwrap();
    assert_eq!(python("starttls", mta.addr, &[ca])["cn"], "mx.test");
    // Replace the default certificate's files with the second one's, then SIGHUP: a client
    // asking for mx.test then gets a certificate that is not valid for it.
    let (cert0, key0) = &certs.leaves[0];
    let (cert1, key1) = &certs.leaves[1];
    std::fs::copy(cert1, cert0).unwrap();
    std::fs::copy(key1, key0).unwrap();
    mta.signal(libc::SIGHUP);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/tls_client.py");
    let port = mta.addr.port().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = Command::new("python3")
            .args([script, "starttls", "127.0.0.1", &port, ca, "mx.test"])
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("CERTIFICATE_VERIFY_FAILED") || err.contains("match"),
                "{err}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "certificates not reloaded"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Sessions keep working with the new certificate.
    assert_eq!(
        python("starttls", mta.addr, &[ca, "other.test"])["cn"],
        "other.test"
    );
    assert!(mta.stop().success());
}
