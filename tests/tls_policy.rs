//! Outbound TLS that receivers require through DNS, through real sockets on loopback: DANE
//! (TLSA records with and without the AD bit of the fake resolver) and MTA-STS (policies served
//! by a local HTTPS server, and policies kept on disk), against a receiving `mta` whose
//! certificates come from a CA made here.

mod common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::certs::make_certs;
use common::{Mta, event_log, mta_cli_json, submit, tempdir, write_config};
use mta::dns::fake::{FakeDns, FakeZone};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Waits until the event log has a delivery event for `rcpt` (bounded) and returns it.
fn wait_for(dir: &Path, rcpt: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(v) = event_log(dir).into_iter().find(|v| v["recipient"] == rcpt) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no delivery record for {rcpt}: {:?}", event_log(dir));
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn first_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

fn spki(cert: &CertificateDer<'_>) -> Vec<u8> {
    let ee = webpki::EndEntityCert::try_from(cert).unwrap();
    ee.subject_public_key_info().as_ref().to_vec()
}

/// A receiving `mta` (delivery on hold) taking mail for `domains`, with these certificates.
fn receiver(
    dir: &Path,
    domains: &[&str],
    certs: &[(std::path::PathBuf, std::path::PathBuf)],
) -> Mta {
    let list: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    // Delivery is on hold: the relay host is never connected to.
    let mut extra = format!(
        "[relay]\nlocal_domains = [{}]\n[delivery]\nhold = true\nrelay_host = \"127.0.0.1:9\"\n[tls]\n",
        list.join(", ")
    );
    for (cert, key) in certs {
        extra.push_str(&format!(
            "[[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    let config = write_config(dir, "", &extra);
    Mta::start(dir, &config)
}

fn policy(mode: &str, mx: &[&str]) -> String {
    let mut p = format!("version: STSv1\r\nmode: {mode}\r\n");
    for m in mx {
        p.push_str(&format!("mx: {m}\r\n"));
    }
    p.push_str("max_age: 86400\r\n");
    p
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn dane_and_mta_sts_decide_how_mail_goes_out() {
    let certs_dir = tempdir();
    let good_names = [
        "mx.dane-ok.test",
        "mx.dane-bad.test",
        "mx.unsigned.test",
        "mx.both.test",
        "mx.sts-enforce.test",
        "mx.sts-nomatch.test",
        "mx.sts-testing.test",
        "mx.sts-none.test",
        "mx.sts-404.test",
        "mx.sts-expired.test",
        "mx.sts-cached.test",
    ];
    let sts_domains = [
        "both.test",
        "sts-enforce.test",
        "sts-nomatch.test",
        "sts-badcert.test",
        "sts-testing.test",
        "sts-none.test",
        "sts-404.test",
    ];
    let policy_hosts: Vec<String> = sts_domains.iter().map(|d| format!("mta-sts.{d}")).collect();
    let policy_names: Vec<&str> = policy_hosts.iter().map(String::as_str).collect();
    let certs = make_certs(
        certs_dir.path(),
        &[&good_names, &["mx.dane-ta.test"], &policy_names],
    );
    // The DANE-TA host sends its CA in its chain.
    let ta_chain = certs_dir.path().join("ta-chain.pem");
    let mut chain = std::fs::read(&certs.leaves[1].0).unwrap();
    chain.extend(std::fs::read(&certs.ca).unwrap());
    std::fs::write(&ta_chain, chain).unwrap();
    let leaf = first_cert(&certs.leaves[0].0);
    let ca = first_cert(&certs.ca);

    let domains: Vec<&str> = [
        "dane-ok.test",
        "dane-bad.test",
        "dane-ta.test",
        "unsigned.test",
        "sts-expired.test",
        "sts-cached.test",
    ]
    .into_iter()
    .chain(sts_domains)
    .collect();
    let recv_dir = tempdir();
    let receiver_certs = [
        certs.leaves[0].clone(),
        (ta_chain, certs.leaves[1].1.clone()),
    ];
    let mut recv = receiver(recv_dir.path(), &domains, &receiver_certs);
    let port = recv.addr.port();

    let mut policies = HashMap::new();
    let mut add = |d: &str, p: String| {
        policies.insert(format!("mta-sts.{d}"), p);
    };
    add("both.test", policy("enforce", &["nomatch.example"]));
    add(
        "sts-enforce.test",
        policy("enforce", &["*.sts-enforce.test"]),
    );
    add(
        "sts-nomatch.test",
        policy("enforce", &["mx.elsewhere.example"]),
    );
    add(
        "sts-badcert.test",
        policy("enforce", &["mx.sts-badcert.test"]),
    );
    add(
        "sts-testing.test",
        policy("testing", &["mx.elsewhere.example"]),
    );
    add(
        "sts-none.test",
        "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n".to_owned(),
    );
    let https = common::https::start(&certs.leaves[2].0, &certs.leaves[2].1, policies);

    let tlsa = |z: FakeZone, host: &str, u: u8, s: u8, m: u8, d: &[u8]| {
        z.tlsa(&format!("_{port}._tcp.{host}"), u, s, m, d)
    };
    let mut zone = FakeZone::default();
    for d in &domains {
        zone = zone
            .mx(d, 10, &format!("mx.{d}"))
            .a(&format!("mx.{d}"), Ipv4Addr::LOCALHOST);
    }
    for d in sts_domains {
        zone = zone
            .txt(&format!("_mta-sts.{d}"), "v=STSv1; id=20261204T1;")
            .a(&format!("mta-sts.{d}"), Ipv4Addr::LOCALHOST);
    }
    zone = tlsa(zone, "mx.dane-ok.test", 3, 1, 1, &sha256(&spki(&leaf)));
    zone = tlsa(zone, "mx.dane-bad.test", 3, 1, 1, &[0u8; 32]);
    zone = tlsa(zone, "mx.dane-ta.test", 2, 0, 1, &sha256(ca.as_ref()));
    zone = tlsa(zone, "mx.both.test", 3, 0, 1, &sha256(leaf.as_ref()));
    // A record that does not match, in a zone that is not signed: not used.
    zone = tlsa(zone, "mx.unsigned.test", 3, 1, 1, &[0u8; 32]);
    for z in ["dane-ok.test", "dane-bad.test", "dane-ta.test", "both.test"] {
        zone = zone.signed(z);
    }
    let dns = FakeDns::start(zone).unwrap();

    let dir = tempdir();
    // Policies kept from an earlier run: one expired, one still valid.
    let cache = dir.path().join("spool/mta-sts");
    std::fs::create_dir_all(&cache).unwrap();
    let kept = |domain: &str, fetched: u64| {
        let c = serde_json::json!({
            "id": "old",
            "policy": {"mode": "enforce", "mx": ["mx.elsewhere.example"], "max_age": 86400},
            "fetched_unix": fetched,
        });
        std::fs::write(cache.join(format!("{domain}.json")), c.to_string()).unwrap();
    };
    kept("sts-expired.test", 1000);
    kept("sts-cached.test", now_unix() - 60);

    let extra = format!(
        "[delivery]\nidle_timeout = \"30s\"\nmx_port = {port}\nmx_allow_loopback = true\n\
         [delivery.retry]\nfirst = \"1h\"\n\
         [delivery.tls_policy]\ndane = true\nmta_sts = true\nmta_sts_port = {}\n\
         [dns]\nservers = [\"{}\"]\n[tls]\nca_file = \"{}\"\n",
        https.port,
        dns.addr(),
        certs.ca.display(),
    );
    let config = write_config(dir.path(), "", &extra);
    let mut sender = Mta::start(dir.path(), &config);
    let rcpts: Vec<String> = domains.iter().map(|d| format!("u@{d}")).collect();
    let rcpt_refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    submit(&sender, &rcpt_refs, "policies");

    let delivered = |rcpt: &str, policy: &str, verified: &str| {
        let v = wait_for(dir.path(), rcpt);
        assert_eq!(v["type"], "Delivery", "{v}");
        assert!(v["tls"].as_str().unwrap().starts_with("TLSv1."), "{v}");
        assert_eq!(v["tls_policy"], policy, "{v}");
        assert_eq!(v["tls_verified"], verified, "{v}");
    };
    let deferred = |rcpt: &str, words: &str| {
        let v = wait_for(dir.path(), rcpt);
        assert_eq!(v["type"], "TransientFailure", "{v}");
        assert_eq!(v["status"], "4.7.5", "{v}");
        assert!(v["reply"].as_str().unwrap().contains(words), "{v}");
    };
    // DANE: a matching DANE-EE record, a matching DANE-TA record (the chain is checked against
    // the anchor the server sent), a record that matches nothing.
    delivered("u@dane-ok.test", "dane", "yes");
    delivered("u@dane-ta.test", "dane", "yes");
    deferred("u@dane-bad.test", "TLSA");
    // No AD bit: the records are ignored and the configured policy applies.
    delivered("u@unsigned.test", "opportunistic", "yes");
    // DANE wins over an MTA-STS policy that would have refused the host.
    delivered("u@both.test", "dane", "yes");
    // MTA-STS enforce: a named host with a valid certificate; no named host; a bad certificate.
    delivered("u@sts-enforce.test", "mta-sts", "yes");
    deferred("u@sts-nomatch.test", "MTA-STS");
    deferred("u@sts-badcert.test", "mta-sts policy");
    // testing reports only, none withdraws the policy.
    delivered("u@sts-testing.test", "mta-sts-testing/opportunistic", "yes");
    delivered("u@sts-none.test", "opportunistic", "yes");
    // A record whose policy cannot be fetched (404), nothing kept: as if there were none.
    delivered("u@sts-404.test", "opportunistic", "yes");
    // A kept policy past its max_age no longer applies; one within it still does.
    delivered("u@sts-expired.test", "opportunistic", "yes");
    deferred("u@sts-cached.test", "MTA-STS");

    // Fetched policies are kept on disk for the next start.
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("sts-enforce.test.json")).unwrap())
            .unwrap();
    assert_eq!(kept["policy"]["mode"], "enforce", "{kept}");
    assert_eq!(kept["id"], "20261204T1", "{kept}");
    assert!(
        sender
            .drain_log()
            .iter()
            .any(|l| l.contains("MTA-STS (testing)")),
        "testing mode reports the failure in the log"
    );

    // TLS-Required: No (RFC 8689 5): the receiver's policies do not hold the message back.
    let mut c = common::Client::connect(sender.addr);
    c.reply();
    c.send(
        b"EHLO c.test\r\nMAIL FROM:<a@src.test>\r\nRCPT TO:<v@dane-bad.test>\r\n\
          RCPT TO:<v@sts-nomatch.test>\r\nDATA\r\n",
    );
    assert_eq!(c.codes(5), [250, 250, 250, 250, 354]);
    c.send(b"TLS-Required: No\r\nSubject: optional\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().unwrap().starts_with("250"));
    delivered("v@dane-bad.test", "opportunistic", "yes");
    delivered("v@sts-nomatch.test", "opportunistic", "yes");
    let v = wait_for(dir.path(), "v@dane-bad.test");
    assert!(
        v["destination"]
            .as_str()
            .unwrap()
            .starts_with("tls-optional:"),
        "{v}"
    );

    // `mta dest show` says which policies the hops get and what the last connection used.
    let admin = sender.admin.expect("admin endpoint");
    let shows = |domain: &str, field: &str, words: &str| {
        let v = mta_cli_json(admin, &config, &["dest", "show", domain]);
        let shards = v["shards"].as_array().unwrap();
        assert!(
            shards
                .iter()
                .any(|s| s[field].as_str().is_some_and(|t| t.contains(words))),
            "{domain} {field} should say {words:?}: {v}"
        );
    };
    shows("dane-ok.test", "tls_policy", "mx.dane-ok.test: DANE");
    shows(
        "dane-ok.test",
        "last_tls",
        "policy dane, certificate verified: yes",
    );
    shows("dane-bad.test", "tls_policy", "mx.dane-bad.test: DANE");
    shows(
        "sts-enforce.test",
        "tls_policy",
        "MTA-STS enforce (id 20261204T1",
    );
    shows(
        "sts-enforce.test",
        "last_tls",
        "policy mta-sts, certificate verified: yes",
    );
    shows(
        "unsigned.test",
        "tls_policy",
        "no DANE (host address not DNSSEC-validated)",
    );

    assert!(sender.stop().success());
    assert!(recv.stop().success());
}

/// An SMTP client that says EHLO, STARTTLS (trusting `ca`) and EHLO again, then sends `lines`
/// and returns every reply after the second EHLO's, in order (the second EHLO's reply first).
fn smtp_over_tls(addr: std::net::SocketAddr, ca: &Path, commands: &[&str]) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut plain = BufReader::new(tcp.try_clone().unwrap());
    let read_reply = |r: &mut dyn BufRead| {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "EOF after {text:?}");
            text.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                return text;
            }
        }
    };
    read_reply(&mut plain);
    (&tcp).write_all(b"EHLO c.test\r\n").unwrap();
    let ehlo = read_reply(&mut plain);
    assert!(
        !ehlo.contains("REQUIRETLS"),
        "not offered before TLS: {ehlo}"
    );
    (&tcp).write_all(b"STARTTLS\r\n").unwrap();
    assert!(read_reply(&mut plain).starts_with("220"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(first_cert(ca)).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "mx.test".try_into().unwrap()).unwrap();
    let tls = rustls::StreamOwned::new(conn, tcp);
    let mut tls = BufReader::new(tls);
    tls.get_mut().write_all(b"EHLO c.test\r\n").unwrap();
    let mut replies = vec![read_reply(&mut tls)];
    for c in commands {
        tls.get_mut().write_all(c.as_bytes()).unwrap();
        replies.push(read_reply(&mut tls));
    }
    replies
}

#[test]
fn requiretls_mail_goes_only_over_verified_tls_to_servers_that_offer_it() {
    let certs_dir = tempdir();
    let names = ["mx.test", "mx.dane-ok.test", "mx.plain.test", "127.0.0.1"];
    let certs = make_certs(certs_dir.path(), &[&names]);
    let leaf = first_cert(&certs.leaves[0].0);
    let recv_dir = tempdir();
    let mut recv = receiver(
        recv_dir.path(),
        &["dane-ok.test", "plain.test"],
        &certs.leaves,
    );
    let port = recv.addr.port();
    // A next hop with a valid certificate that does not offer REQUIRETLS.
    let legacy = common::smarthost::Smarthost::start(
        common::smarthost::Offer {
            starttls: true,
            mechanisms: "PLAIN",
            user: "u",
            password: "p",
        },
        &certs.leaves[0].0,
        &certs.leaves[0].1,
    );
    let zone = FakeZone::default()
        .mx("dane-ok.test", 10, "mx.dane-ok.test")
        .a("mx.dane-ok.test", Ipv4Addr::LOCALHOST)
        .tlsa(
            &format!("_{port}._tcp.mx.dane-ok.test"),
            3,
            1,
            1,
            &sha256(&spki(&leaf)),
        )
        .signed("dane-ok.test")
        .mx("plain.test", 10, "mx.plain.test")
        .a("mx.plain.test", Ipv4Addr::LOCALHOST);
    let dns = FakeDns::start(zone).unwrap();

    let dir = tempdir();
    let extra = format!(
        "[delivery]\nidle_timeout = \"1s\"\nmx_port = {port}\nmx_allow_loopback = true\n\
         [delivery.retry]\nfirst = \"1h\"\n[delivery.tls_policy]\ndane = true\n\
         [[routes]]\ndomain = \"legacy.test\"\nhosts = [\"127.0.0.1:{}\"]\ntls = \"verify\"\n\
         [dns]\nservers = [\"{}\"]\n[tls]\nca_file = \"{}\"\n\
         [[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        legacy.port,
        dns.addr(),
        certs.ca.display(),
        certs.leaves[0].0.display(),
        certs.leaves[0].1.display(),
    );
    let config = write_config(dir.path(), "", &extra);
    let mut sender = Mta::start(dir.path(), &config);

    // Outside TLS the parameter is refused and not offered.
    let mut c = common::Client::connect(sender.addr);
    c.reply();
    c.send(b"EHLO c.test\r\n");
    let ehlo = c.reply().unwrap();
    assert!(!ehlo.contains("REQUIRETLS"), "{ehlo}");
    c.send(b"MAIL FROM:<a@src.test> REQUIRETLS\r\n");
    let r = c.reply().unwrap();
    assert!(r.starts_with("530 5.7.10"), "{r}");

    // Inside TLS it is offered, accepted and kept with the message.
    let replies = smtp_over_tls(
        sender.addr,
        &certs.ca,
        &[
            "MAIL FROM:<a@src.test> REQUIRETLS\r\n",
            "RCPT TO:<u@dane-ok.test>\r\n",
            "RCPT TO:<u@plain.test>\r\n",
            "RCPT TO:<u@legacy.test>\r\n",
            "DATA\r\n",
            "Subject: secret\r\n\r\nhello\r\n.\r\n",
            "QUIT\r\n",
        ],
    );
    assert!(replies[0].contains("REQUIRETLS"), "{replies:?}");
    let codes: Vec<&str> = replies[1..].iter().map(|r| &r[..3]).collect();
    assert_eq!(
        codes,
        ["250", "250", "250", "250", "354", "250", "221"],
        "{replies:?}"
    );

    // DANE-verified and offering REQUIRETLS: delivered, with the parameter passed on.
    let v = wait_for(dir.path(), "u@dane-ok.test");
    assert_eq!(v["type"], "Delivery", "{v}");
    assert_eq!(v["tls_policy"], "dane", "{v}");
    // Opportunistic TLS is not enough: bounced (5.7.10).
    let v = wait_for(dir.path(), "u@plain.test");
    assert_eq!(v["type"], "Bounce", "{v}");
    assert_eq!(v["status"], "5.7.10", "{v}");
    // A verified next hop without REQUIRETLS: bounced (5.7.30).
    let v = wait_for(dir.path(), "u@legacy.test");
    assert_eq!(v["type"], "Bounce", "{v}");
    assert_eq!(v["status"], "5.7.30", "{v}");
    assert!(legacy.got.lock().unwrap().is_empty(), "nothing sent to it");

    assert!(sender.stop().success());
    assert!(recv.stop().success());
    let queue = mta::spool::read_offline(&recv_dir.path().join("spool")).expect("spool");
    assert_eq!(
        queue.messages.len(),
        1,
        "only the DANE-verified copy arrived"
    );
    let m = &queue.messages[0].message;
    assert!(
        m.mail_params.iter().any(|(k, _)| k == "REQUIRETLS"),
        "{:?}",
        m.mail_params
    );
}

#[test]
fn an_enforced_policy_is_kept_across_a_restart() {
    let certs_dir = tempdir();
    let certs = make_certs(
        certs_dir.path(),
        &[&["mx.kept.test"], &["mta-sts.kept.test"]],
    );
    let recv_dir = tempdir();
    let mut recv = receiver(recv_dir.path(), &["kept.test"], &certs.leaves[..1]);
    let port = recv.addr.port();
    let mut policies = HashMap::new();
    policies.insert(
        "mta-sts.kept.test".to_owned(),
        policy("enforce", &["mx.elsewhere.example"]),
    );
    let https = common::https::start(&certs.leaves[1].0, &certs.leaves[1].1, policies);
    let zone = || {
        FakeZone::default()
            .mx("kept.test", 10, "mx.kept.test")
            .a("mx.kept.test", Ipv4Addr::LOCALHOST)
    };
    let with_policy = FakeDns::start(
        zone()
            .txt("_mta-sts.kept.test", "v=STSv1; id=1;")
            .a("mta-sts.kept.test", Ipv4Addr::LOCALHOST),
    )
    .unwrap();
    let dir = tempdir();
    let config = |dns: std::net::SocketAddr| {
        let extra = format!(
            "[delivery]\nidle_timeout = \"1s\"\nmx_port = {port}\nmx_allow_loopback = true\n\
             [delivery.retry]\nfirst = \"1h\"\n[delivery.tls_policy]\nmta_sts = true\n\
             mta_sts_port = {}\n[dns]\nservers = [\"{dns}\"]\n[tls]\nca_file = \"{}\"\n",
            https.port,
            certs.ca.display(),
        );
        write_config(dir.path(), "", &extra)
    };
    let mut sender = Mta::start(dir.path(), &config(with_policy.addr()));
    submit(&sender, &["u@kept.test"], "first");
    let v = wait_for(dir.path(), "u@kept.test");
    assert_eq!(v["type"], "TransientFailure", "{v}");
    assert!(v["reply"].as_str().unwrap().contains("MTA-STS"), "{v}");
    assert!(sender.stop().success());

    // After the restart the record is gone from DNS: the kept policy still applies.
    let without = FakeDns::start(zone()).unwrap();
    let mut sender = Mta::start(dir.path(), &config(without.addr()));
    submit(&sender, &["v@kept.test"], "second");
    let v = wait_for(dir.path(), "v@kept.test");
    assert_eq!(v["type"], "TransientFailure", "{v}");
    assert!(v["reply"].as_str().unwrap().contains("MTA-STS"), "{v}");
    assert_eq!(
        https.requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "fetched once, before the restart"
    );
    assert!(sender.stop().success());
    assert!(recv.stop().success());
}
