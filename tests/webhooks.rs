//! Webhooks through a running binary: an HTTP receiver on loopback that checks each POST's
//! signature and records the events. It is down (connection refused, then `500`) while mail
//! is received, delivered, deferred and bounced, comes back, and gets every event of the log
//! at least once (their ids deduplicate to exactly the log's); a hook filtered by type gets
//! those types only; a SIGKILL in the middle of the load and a restart lose no event of an
//! acknowledged message.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Client, Mta, closed_port, mta_cli_json, tempdir, write_config};

const SECRET: &str = "a test secret of some length";

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Every event, with the hook that sent it (duplicates kept).
    events: Vec<(String, serde_json::Value)>,
    /// POSTs whose signature did not check out.
    bad_signatures: usize,
    /// POSTs answered 500.
    refused: usize,
}

/// An HTTP/1.1 receiver on `port`: answers 500 while `failing`, else 200 and records.
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    failing: Arc<AtomicBool>,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        Receiver::start_tls(port, None)
    }

    /// The same, over TLS with `tls` when given.
    fn start_tls(port: u16, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let failing = Arc::new(AtomicBool::new(false));
        let (s, f) = (seen.clone(), failing.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let (s, f, tls) = (s.clone(), f.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config).unwrap();
                        serve(rustls::StreamOwned::new(conn, stream), &s, &f)
                    }
                    None => serve(stream, &s, &f),
                });
            }
        });
        Receiver { seen, failing }
    }

    /// The distinct ids sent by `hook`, and how many events in all.
    fn ids(&self, hook: &str) -> (BTreeSet<String>, usize) {
        let seen = self.seen.lock().unwrap();
        let mine: Vec<&serde_json::Value> = seen
            .events
            .iter()
            .filter(|(h, _)| h == hook)
            .map(|(_, e)| e)
            .collect();
        let ids = mine
            .iter()
            .map(|e| e["id"].as_str().expect("every event has an id").to_owned())
            .collect();
        (ids, mine.len())
    }
}

fn serve(stream: impl Read + Write, seen: &Mutex<Seen>, failing: &AtomicBool) {
    let mut r = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push(line.trim_end().to_owned()),
            }
        }
        let header = |name: &str| {
            head.iter().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let fail = failing.load(Ordering::SeqCst);
        {
            let mut seen = seen.lock().unwrap();
            let ts = header("x-mta-timestamp").unwrap_or_default();
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
            let mut signed = format!("{ts}.").into_bytes();
            signed.extend_from_slice(&body);
            let tag = ring::hmac::sign(&key, &signed);
            let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            if header("x-mta-signature") != Some(format!("sha256={hex}")) {
                seen.bad_signatures += 1;
            }
            if fail {
                seen.refused += 1;
            } else {
                let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
                let hook = v["hook"].as_str().unwrap_or("").to_owned();
                for e in v["events"].as_array().expect("events") {
                    seen.events.push((hook.clone(), e.clone()));
                }
            }
        }
        let status = if fail {
            "500 Internal Server Error"
        } else {
            "200 OK"
        };
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        let out = r.get_mut();
        if out
            .write_all(answer.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

/// Every line of the event logs in `dir/log` (rotated files included), parsed. A line that is
/// not JSON is left out: the end of a write still in progress, or a line torn by the SIGKILL
/// (its change was never acknowledged; webhooks skip it too).
fn log_events(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.join("log")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for l in std::fs::read_to_string(&path).unwrap().lines() {
                if let Ok(v) = serde_json::from_str(l) {
                    out.push(v);
                }
            }
        }
    }
    out
}

fn ids_of<'a>(events: impl Iterator<Item = &'a serde_json::Value>) -> BTreeSet<String> {
    events
        .map(|e| e["id"].as_str().expect("every line has an id").to_owned())
        .collect()
}

fn hook(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[webhooks]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{port}/events\"\n\
         secret = \"{SECRET}\"\nbatch_size = 7\nbatch_wait = \"200ms\"\ntimeout = \"5s\"\n\
         retry_min = \"50ms\"\nretry_max = \"400ms\"\n{extra}\n"
    )
}

fn config(dir: &Path, sink: u16, hooks: &str) -> std::path::PathBuf {
    write_config(
        dir,
        "",
        &format!(
            "[delivery]\nidle_timeout = \"2s\"\n[delivery.retry]\nfirst = \"1s\"\nmax = \"2s\"\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{sink}\"]\n\
             [[routes]]\ndomain = \"src.test\"\nhosts = [\"127.0.0.1:{sink}\"]\n{hooks}"
        ),
    )
}

/// One message from `a@src.test` to `rcpts`; its queue id when it got a `250`.
fn send(addr: SocketAddr, rcpts: &[String]) -> Option<String> {
    let mut c = Client::connect(addr);
    c.reply()?;
    c.send(b"EHLO c.test\r\n");
    c.reply()?;
    let mut cmd = String::from("MAIL FROM:<a@src.test>\r\n");
    for r in rcpts {
        cmd.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    cmd.push_str("DATA\r\n");
    c.send(cmd.as_bytes());
    for _ in 0..rcpts.len() + 2 {
        c.reply()?;
    }
    c.send(b"Subject: hook\r\n\r\nhello\r\n.\r\n");
    let r = c.reply()?;
    r.starts_with("250")
        .then(|| r.split_whitespace().last().unwrap().to_owned())
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_receiver_down_for_a_while_gets_every_event_and_filters_hold() {
    let dir = tempdir();
    let sink = Scripted::start(false, 1);
    let port = closed_port();
    let hooks = hook("all", port, "") + &hook("bounces", port, "events = [\"Bounce\"]\n");
    let cfg = config(dir.path(), sink.port, &hooks);
    let mut mta = Mta::start(dir.path(), &cfg);
    // Delivered, deferred once then delivered, bounced (with a DSN to the sender, delivered
    // too, and a suppression entry).
    for rcpts in [
        vec!["good@dest.test"],
        vec!["slow@dest.test"],
        vec!["bad1@dest.test"],
    ] {
        let rcpts: Vec<String> = rcpts.into_iter().map(String::from).collect();
        send(mta.addr, &rcpts).expect("accepted");
    }
    let kinds = [
        "Reception",
        "Delivery",
        "TransientFailure",
        "Bounce",
        "Suppression",
    ];
    wait_until(
        "every kind of event in the log",
        Duration::from_secs(30),
        || {
            let log = log_events(dir.path());
            let deliveries = log.iter().filter(|e| e["type"] == "Delivery").count();
            // good, slow and the DSN.
            deliveries >= 3 && kinds.iter().all(|k| log.iter().any(|e| e["type"] == *k))
        },
    );
    // Connection refused so far; now the endpoint answers 500 for a while.
    let receiver = Receiver::start(port);
    receiver.failing.store(true, Ordering::SeqCst);
    wait_until("refused POSTs", Duration::from_secs(20), || {
        receiver.seen.lock().unwrap().refused >= 3
    });
    let admin = mta.admin.unwrap();
    let view = mta_cli_json(admin, &cfg, &["webhooks"]);
    let all = view["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "all")
        .unwrap()
        .clone();
    assert!(all["last_error"].as_str().unwrap().contains("500"), "{all}");
    assert!(all["lag_bytes"].as_u64().unwrap() > 0, "{all}");
    receiver.failing.store(false, Ordering::SeqCst);
    let expected = ids_of(log_events(dir.path()).iter());
    wait_until(
        "every event at the receiver",
        Duration::from_secs(30),
        || receiver.ids("all").0.is_superset(&expected),
    );
    let bounce_ids =
        |log: &[serde_json::Value]| ids_of(log.iter().filter(|e| e["type"] == "Bounce"));
    wait_until(
        "the bounces at the filtered hook",
        Duration::from_secs(30),
        || receiver.ids("bounces").0 == bounce_ids(&log_events(dir.path())),
    );
    let metrics = common::mta_cli(admin, &cfg, &["metrics"]).1;
    assert!(
        metrics.contains("mta_webhook_posts_total{hook=\"all\",result=\"http_error\"}"),
        "{metrics}"
    );
    // Nothing more happens: the ids deduplicate to exactly the log's.
    wait_until("the exact set of ids", Duration::from_secs(30), || {
        receiver.ids("all").0 == ids_of(log_events(dir.path()).iter())
    });
    let (ids, total) = receiver.ids("all");
    assert!(total >= ids.len());
    let (bounces, _) = receiver.ids("bounces");
    assert!(!bounces.is_empty());
    assert_eq!(receiver.seen.lock().unwrap().bad_signatures, 0);
    assert!(mta.stop().success());
}

#[test]
fn sigkill_in_the_middle_and_a_restart_lose_no_event() {
    let dir = tempdir();
    let sink = Scripted::start(false, 0);
    let port = closed_port();
    let receiver = Receiver::start(port);
    let cfg = config(dir.path(), sink.port, &hook("all", port, ""));
    let mut mta = Mta::start(dir.path(), &cfg);
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = |addr: SocketAddr, tag: &'static str, count: usize| {
        (0..4)
            .map(|t| {
                let (acked, stop, sent) = (acked.clone(), stop.clone(), sent.clone());
                std::thread::spawn(move || {
                    for i in 0..count {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let rcpts = vec![format!("r{t}.{i}.{tag}@dest.test")];
                        match send(addr, &rcpts) {
                            Some(id) => {
                                acked.lock().unwrap().insert(id);
                                sent.fetch_add(1, Ordering::SeqCst);
                            }
                            None => return,
                        }
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    let threads = load(mta.addr, "before", 1000);
    wait_until("some mail", Duration::from_secs(60), || {
        sent.load(Ordering::SeqCst) >= 300
    });
    mta.kill();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let mut mta = Mta::start(dir.path(), &cfg);
    stop.store(false, Ordering::SeqCst);
    for t in load(mta.addr, "after", 25) {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    // Every acknowledged message is delivered (after the restart for some) ...
    wait_until("every delivery", Duration::from_secs(90), || {
        let log = log_events(dir.path());
        let delivered: HashSet<&str> = log
            .iter()
            .filter(|e| e["type"] == "Delivery")
            .filter_map(|e| e["queue_id"].as_str())
            .collect();
        acked.iter().all(|id| delivered.contains(id.as_str()))
    });
    // ... its reception reaches the receiver, and so does every line of the log.
    wait_until(
        "every line at the receiver",
        Duration::from_secs(60),
        || {
            receiver
                .ids("all")
                .0
                .is_superset(&ids_of(log_events(dir.path()).iter()))
        },
    );
    let seen = receiver.seen.lock().unwrap();
    let received: HashSet<&str> = seen
        .events
        .iter()
        .filter(|(_, e)| e["type"] == "Reception")
        .filter_map(|(_, e)| e["queue_id"].as_str())
        .collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !received.contains(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "receptions lost: {missing:?}");
    assert_eq!(seen.bad_signatures, 0);
    drop(seen);
    assert!(mta.stop().success());
}

#[test]
fn an_https_endpoint_verified_against_tls_ca_file_gets_the_events() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempdir();
    let certs = common::certs::make_certs(dir.path(), &[&["127.0.0.1"]]);
    let (cert, key) = &certs.leaves[0];
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
    .unwrap();
    let port = closed_port();
    let receiver = Receiver::start_tls(port, Some(Arc::new(tls)));
    let hooks = format!(
        "[[webhooks]]\nname = \"tls\"\nurl = \"https://127.0.0.1:{port}/events\"\n\
         secret = \"{SECRET}\"\nbatch_wait = \"100ms\"\nretry_min = \"50ms\"\n\
         [tls]\nca_file = \"{}\"\n",
        certs.ca.display()
    );
    let cfg = write_config(dir.path(), "", &hooks);
    let mut mta = Mta::start(dir.path(), &cfg);
    let id = send(mta.addr, &["u@dest.test".to_owned()]).expect("accepted");
    wait_until("the reception over https", Duration::from_secs(30), || {
        let seen = receiver.seen.lock().unwrap();
        seen.events
            .iter()
            .any(|(h, e)| h == "tls" && e["type"] == "Reception" && e["queue_id"] == id.as_str())
    });
    assert_eq!(receiver.seen.lock().unwrap().bad_signatures, 0);
    assert!(mta.stop().success());
}
