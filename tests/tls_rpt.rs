//! TLS reporting (RFC 8460) through real sockets on loopback: sessions with receivers that
//! publish an MTA-STS policy or DANE records succeed or fail, and the reports arrive at the
//! addresses the fake DNS publishes in `_smtp._tls` records: by mail (through the MTA's own
//! queue, to a scripted receiver) and by HTTPS POST (a local server). Also: the counts survive
//! a restart.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use common::certs::make_certs;
use common::receiver::Scripted;
use common::{Mta, event_log, submit, tempdir, write_config};
use mta::dns::fake::{FakeDns, FakeZone};
use serde_json::Value;

fn gunzip(data: &[u8]) -> Value {
    let mut text = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut text)
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The JSON report in a report message.
fn report_of_mail(body: &str) -> Value {
    let part = body
        .split("Content-Type: application/tlsrpt+gzip\r\n")
        .nth(1)
        .expect("a tlsrpt+gzip part");
    let encoded: String = part
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .split("\r\n--")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    gunzip(
        &base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
}

/// Successes, failures, and failure details as (result type, mx, count).
type Counts = (u64, u64, Vec<(String, String, u64)>);

/// The [`Counts`] of `domain` summed over `reports`.
fn counts(reports: &[Value], domain: &str) -> Counts {
    let (mut ok, mut failed, mut details) = (0, 0, Vec::new());
    for r in reports {
        for p in r["policies"].as_array().unwrap() {
            if p["policy"]["policy-domain"] != domain {
                continue;
            }
            ok += p["summary"]["total-successful-session-count"]
                .as_u64()
                .unwrap();
            failed += p["summary"]["total-failure-session-count"]
                .as_u64()
                .unwrap();
            for d in p["failure-details"].as_array().unwrap() {
                details.push((
                    d["result-type"].as_str().unwrap().to_owned(),
                    d["receiving-mx-hostname"].as_str().unwrap().to_owned(),
                    d["failed-session-count"].as_u64().unwrap(),
                ));
            }
        }
    }
    (ok, failed, details)
}

fn policy(mx: &str) -> String {
    policy_in("enforce", mx)
}

fn policy_in(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

/// The sending MTA's configuration: one connection per destination at a time, so that each
/// recipient domain gets exactly one session (a failed one is retried only after an hour).
fn sender_config(
    dir: &Path,
    extra: &str,
    https_port: u16,
    dns: &FakeDns,
    ca: &Path,
) -> std::path::PathBuf {
    let text = format!(
        "[delivery]\nidle_timeout = \"30s\"\nmx_allow_loopback = true\nmax_connections = 1\n{extra}\
         [delivery.retry]\nfirst = \"1h\"\n\
         [delivery.tls_policy]\nmta_sts = true\nmta_sts_port = {https_port}\n\
         [dns]\nservers = [\"{}\"]\n[tls]\nca_file = \"{}\"\n",
        dns.addr(),
        ca.display(),
    );
    write_config(dir, "", &text)
}

fn zone(domains: &[&str], rua_port: u16) -> FakeZone {
    let mut zone = FakeZone::default().a("reports.test", Ipv4Addr::LOCALHOST);
    for d in domains {
        zone = zone
            .mx(d, 10, &format!("mx.{d}"))
            .a(&format!("mx.{d}"), Ipv4Addr::LOCALHOST)
            .txt(&format!("_mta-sts.{d}"), "v=STSv1; id=1;")
            .a(&format!("mta-sts.{d}"), Ipv4Addr::LOCALHOST)
            .txt(
                &format!("_smtp._tls.{d}"),
                &format!(
                    "v=TLSRPTv1; rua=mailto:tlsrpt@reports.test,https://reports.test:{rua_port}/upload"
                ),
            );
    }
    zone
}

fn wait_until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn reports_count_sessions_and_go_by_mail_and_https() {
    let certs_dir = tempdir();
    let domains = ["ok.test", "nomatch.test", "badcert.test", "testing.test"];
    let mut web: Vec<String> = domains.iter().map(|d| format!("mta-sts.{d}")).collect();
    web.push("reports.test".into());
    let web: Vec<&str> = web.iter().map(String::as_str).collect();
    let certs = make_certs(
        certs_dir.path(),
        &[&["mx.ok.test", "mx.nomatch.test", "mx.testing.test"], &web],
    );

    // The receiving MTA: its certificate is valid for mx.ok.test, not for mx.badcert.test.
    let recv_dir = tempdir();
    let recv_config = write_config(
        recv_dir.path(),
        "",
        &format!(
            "[relay]\nlocal_domains = [\"ok.test\", \"nomatch.test\", \"badcert.test\", \"testing.test\"]\n\
             [delivery]\nhold = true\nrelay_host = \"127.0.0.1:9\"\n[tls]\n\
             [[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            certs.leaves[0].0.display(),
            certs.leaves[0].1.display()
        ),
    );
    let recv = Mta::start(recv_dir.path(), &recv_config);
    let mut policies = HashMap::new();
    policies.insert("mta-sts.ok.test".to_owned(), policy("*.ok.test"));
    policies.insert(
        "mta-sts.nomatch.test".to_owned(),
        policy("mx.elsewhere.example"),
    );
    policies.insert("mta-sts.badcert.test".to_owned(), policy("mx.badcert.test"));
    // testing: mail goes, the host not named by the policy is reported.
    policies.insert(
        "mta-sts.testing.test".to_owned(),
        policy_in("testing", "mx.elsewhere.example"),
    );
    let https = common::https::start(&certs.leaves[1].0, &certs.leaves[1].1, policies);
    let reports_mx = Scripted::start(false, 0);
    let dns = FakeDns::start(zone(&domains, https.port)).unwrap();

    let dir = tempdir();
    let extra = format!(
        "mx_port = {}\n[[routes]]\ndomain = \"reports.test\"\nhosts = [\"127.0.0.1:{}\"]\n\
         [delivery.tls_policy.tls_rpt]\nenabled = true\norganization = \"Test Org\"\n\
         from = \"tlsrpt@mx.test\"\nreport_interval = \"2s\"\n",
        recv.addr.port(),
        reports_mx.port
    );
    let config = sender_config(dir.path(), &extra, https.port, &dns, &certs.ca);
    let sender = Mta::start(dir.path(), &config);
    submit(
        &sender,
        &[
            "u@ok.test",
            "u@nomatch.test",
            "u@badcert.test",
            "u@testing.test",
        ],
        "counted",
    );

    // By mail: sum the reports until every session is in (a session may fall in either of
    // two periods).
    let expect = |reports: &[Value]| {
        let ok = counts(reports, "ok.test");
        let nomatch = counts(reports, "nomatch.test");
        let badcert = counts(reports, "badcert.test");
        let testing = counts(reports, "testing.test");
        (ok.0 >= 1 && nomatch.1 >= 1 && badcert.1 >= 1 && testing.1 >= 1)
            .then_some((ok, nomatch, badcert, testing))
    };
    let check = |(ok, nomatch, badcert, testing): (Counts, Counts, Counts, Counts)| {
        assert_eq!(
            testing,
            (
                0,
                1,
                vec![("validation-failure".into(), "mx.testing.test".into(), 1)]
            )
        );
        assert_eq!((ok.0, ok.1), (1, 0), "{ok:?}");
        assert_eq!(
            nomatch,
            (
                0,
                1,
                vec![("validation-failure".into(), "mx.nomatch.test".into(), 1)]
            )
        );
        assert_eq!(
            badcert,
            (
                0,
                1,
                vec![(
                    "certificate-host-mismatch".into(),
                    "mx.badcert.test".into(),
                    1
                )]
            )
        );
    };
    let mails = wait_until(Duration::from_secs(60), "report mail", || {
        let got = reports_mx.got.lock().unwrap().clone();
        let reports: Vec<Value> = got.iter().map(|m| report_of_mail(&m.body)).collect();
        expect(&reports).map(|c| (got, reports, c))
    });
    let (got, reports, c) = mails;
    check(c);
    let m = &got[0];
    assert_eq!(m.from, "tlsrpt@mx.test");
    assert_eq!(m.to, ["tlsrpt@reports.test"]);
    assert!(
        m.body.contains("TLS-Report-Submitter: mx.test\r\n"),
        "{}",
        m.body
    );
    assert!(m.body.contains("report-type=\"tlsrpt\""), "{}", m.body);
    assert!(m.body.contains("Subject: Report Domain: "), "{}", m.body);
    let r = &reports[0];
    assert_eq!(r["organization-name"], "Test Org");
    assert_eq!(r["contact-info"], "tlsrpt@mx.test");
    let p = &r["policies"][0]["policy"];
    assert_eq!(p["policy-type"], "sts", "{r}");
    assert!(p["policy-string"][1] == "mode: enforce", "{r}");

    // By HTTPS: the same counts.
    let (posts, c) = wait_until(Duration::from_secs(60), "report uploads", || {
        let posts = https.posts.lock().unwrap().clone();
        let reports: Vec<Value> = posts.iter().map(|p| gunzip(&p.body)).collect();
        expect(&reports).map(|c| (posts, c))
    });
    check(c);
    assert_eq!(posts[0].content_type, "application/tlsrpt+gzip");
    assert_eq!(posts[0].path, "/upload");
    assert_eq!(posts[0].host, "reports.test");

    // Each report is an event; the report mail itself is not counted (reports.test has no
    // policy).
    let events = event_log(dir.path());
    assert!(
        events.iter().any(|e| e["recipient"] == "u@testing.test"
            && e["type"] == "Delivery"
            && e["tls_policy"] == "mta-sts-testing/opportunistic"),
        "{events:?}"
    );
    let sent: Vec<&Value> = events.iter().filter(|e| e["type"] == "TlsReport").collect();
    assert!(
        sent.iter()
            .any(|e| e["outcome"] == "queued" && e["rua"] == "mailto:tlsrpt@reports.test"),
        "{sent:?}"
    );
    assert!(
        sent.iter()
            .any(|e| e["outcome"] == "sent" && e["domain"] == "nomatch.test"),
        "{sent:?}"
    );
}

#[test]
fn counts_survive_a_restart() {
    let certs_dir = tempdir();
    let certs = make_certs(
        certs_dir.path(),
        &[&["mta-sts.nomatch.test", "reports.test"]],
    );
    let mut policies = HashMap::new();
    policies.insert(
        "mta-sts.nomatch.test".to_owned(),
        policy("mx.elsewhere.example"),
    );
    let https = common::https::start(&certs.leaves[0].0, &certs.leaves[0].1, policies);
    let reports_mx = Scripted::start(false, 0);
    let dns = FakeDns::start(zone(&["nomatch.test"], https.port)).unwrap();
    let dir = tempdir();
    let route = format!(
        "mx_port = 9\n[[routes]]\ndomain = \"reports.test\"\nhosts = [\"127.0.0.1:{}\"]\n\
         [delivery.tls_policy.tls_rpt]\nenabled = true\n",
        reports_mx.port
    );
    // A day-long period: nothing is reported during the first run.
    let config = sender_config(dir.path(), &route, https.port, &dns, &certs.ca);
    let mut sender = Mta::start(dir.path(), &config);
    submit(&sender, &["u@nomatch.test"], "before the restart");
    wait_until(Duration::from_secs(30), "the deferral", || {
        event_log(dir.path())
            .into_iter()
            .find(|e| e["type"] == "TransientFailure")
    });
    assert!(sender.stop().success());
    let state: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("spool/tls-rpt/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state[0]["tally"]["domains"]["nomatch.test"][0]["failure"], 1,
        "{state}"
    );
    assert!(reports_mx.got.lock().unwrap().is_empty());

    // Started with a short period: the kept day is reported at once.
    let short = route.replace(
        "enabled = true\n",
        "enabled = true\nreport_interval = \"2s\"\n",
    );
    let config = sender_config(dir.path(), &short, https.port, &dns, &certs.ca);
    let _sender = Mta::start(dir.path(), &config);
    let day = wait_until(Duration::from_secs(60), "the kept day's report", || {
        https
            .posts
            .lock()
            .unwrap()
            .iter()
            .map(|p| gunzip(&p.body))
            .find(|r| {
                r["date-range"]["start-datetime"]
                    .as_str()
                    .is_some_and(|s| s.ends_with("T00:00:00Z"))
                    && r["date-range"]["end-datetime"]
                        .as_str()
                        .is_some_and(|s| s.ends_with("T23:59:59Z"))
            })
    });
    assert_eq!(
        counts(&[day], "nomatch.test"),
        (
            0,
            1,
            vec![("validation-failure".into(), "mx.nomatch.test".into(), 1)]
        )
    );
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn spki_of_first_cert(path: &Path) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let ee = webpki::EndEntityCert::try_from(&cert).unwrap();
    ee.subject_public_key_info().as_ref().to_vec()
}

#[test]
fn dane_sessions_are_reported_under_tlsa_policies() {
    let certs_dir = tempdir();
    let certs = make_certs(
        certs_dir.path(),
        &[&["mx.dane-ok.test", "mx.dane-bad.test"], &["reports.test"]],
    );
    let recv_dir = tempdir();
    let recv_config = write_config(
        recv_dir.path(),
        "",
        &format!(
            "[relay]\nlocal_domains = [\"dane-ok.test\", \"dane-bad.test\"]\n\
             [delivery]\nhold = true\nrelay_host = \"127.0.0.1:9\"\n[tls]\n\
             [[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            certs.leaves[0].0.display(),
            certs.leaves[0].1.display()
        ),
    );
    let recv = Mta::start(recv_dir.path(), &recv_config);
    let port = recv.addr.port();
    let https = common::https::start(&certs.leaves[1].0, &certs.leaves[1].1, HashMap::new());
    let good = sha256(&spki_of_first_cert(&certs.leaves[0].0));
    let mut zone = FakeZone::default().a("reports.test", Ipv4Addr::LOCALHOST);
    for (d, digest) in [
        ("dane-ok.test", good.clone()),
        ("dane-bad.test", vec![0u8; 32]),
    ] {
        let mx = format!("mx.{d}");
        zone = zone
            .mx(d, 10, &mx)
            .a(&mx, Ipv4Addr::LOCALHOST)
            .tlsa(&format!("_{port}._tcp.{mx}"), 3, 1, 1, &digest)
            .signed(d)
            .txt(
                &format!("_smtp._tls.{d}"),
                &format!("v=TLSRPTv1; rua=https://reports.test:{}/dane", https.port),
            );
    }
    let dns = FakeDns::start(zone).unwrap();
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\nidle_timeout = \"30s\"\nmx_allow_loopback = true\nmax_connections = 1\n\
             mx_port = {port}\n[delivery.retry]\nfirst = \"1h\"\n\
             [delivery.tls_policy]\ndane = true\n\
             [delivery.tls_policy.tls_rpt]\nenabled = true\nreport_interval = \"2s\"\n\
             [dns]\nservers = [\"{}\"]\n[tls]\nca_file = \"{}\"\n",
            dns.addr(),
            certs.ca.display(),
        ),
    );
    let sender = Mta::start(dir.path(), &config);
    submit(&sender, &["u@dane-ok.test", "u@dane-bad.test"], "dane");
    let reports = wait_until(Duration::from_secs(60), "DANE reports", || {
        let reports: Vec<Value> = https
            .posts
            .lock()
            .unwrap()
            .iter()
            .map(|p| gunzip(&p.body))
            .collect();
        let ok = counts(&reports, "dane-ok.test");
        let bad = counts(&reports, "dane-bad.test");
        (ok.0 >= 1 && bad.1 >= 1).then_some(reports)
    });
    assert_eq!(counts(&reports, "dane-ok.test"), (1, 0, vec![]));
    assert_eq!(
        counts(&reports, "dane-bad.test"),
        (
            0,
            1,
            vec![("tlsa-invalid".into(), "mx.dane-bad.test".into(), 1)]
        )
    );
    let policy = reports
        .iter()
        .flat_map(|r| r["policies"].as_array().unwrap())
        .map(|p| &p["policy"])
        .find(|p| p["policy-domain"] == "dane-ok.test")
        .unwrap();
    assert_eq!(policy["policy-type"], "tlsa", "{policy}");
    assert_eq!(policy["mx-host"][0], "mx.dane-ok.test", "{policy}");
    let record = format!(
        "3 1 1 {}",
        good.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    assert_eq!(
        policy["policy-string"][0]
            .as_str()
            .unwrap()
            .to_ascii_lowercase(),
        record
    );
}
