//! Source pools through real sockets: messages leave from the loopback addresses of their pool
//! (127.0.0.2-4), in proportion to the weights, with each source's EHLO name; the pool is
//! chosen by header, by sender domain, or by default. `mta dest suspend|show|resume` and
//! `mta queue flush --destination` given a domain or key act on the queues of every source.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Client, Mta, closed_port, event_log, mta_cli_json, submit, tempdir, write_config};

/// (client IP, EHLO name, MAIL FROM line, Subject) of each message received.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

fn receiver() -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let record = record.clone();
            std::thread::spawn(move || {
                let ip = stream.peer_addr().unwrap().ip().to_string();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = stream.write_all(b"220 rx.test ESMTP\r\n");
                let (mut line, mut helo, mut from, mut subject) =
                    (String::new(), String::new(), String::new(), String::new());
                let mut data = false;
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let reply: &[u8] = if data {
                        if line.starts_with("Subject:") {
                            subject = line.trim().to_owned();
                        }
                        if line == ".\r\n" {
                            data = false;
                            record.lock().unwrap().push((
                                ip.clone(),
                                helo.clone(),
                                from.clone(),
                                subject.clone(),
                            ));
                            b"250 2.0.0 queued\r\n"
                        } else {
                            b""
                        }
                    } else {
                        let upper = line.to_ascii_uppercase();
                        if upper.starts_with("EHLO") {
                            helo = line[5..].trim().to_owned();
                            b"250 rx.test\r\n"
                        } else if upper.starts_with("MAIL") {
                            from = line.trim().to_owned();
                            b"250 2.1.0 ok\r\n"
                        } else if upper.starts_with("DATA") {
                            data = true;
                            b"354 go\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = stream.write_all(b"221 bye\r\n");
                            return;
                        } else {
                            b"250 2.0.0 ok\r\n"
                        }
                    };
                    if stream.write_all(reply).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    (port, seen)
}

fn send(c: &mut Client, from: &str, extra_header: &str, n: usize) {
    for i in 0..n {
        c.send(format!("MAIL FROM:<{from}>\r\nRCPT TO:<u{i}@dest.test>\r\nDATA\r\n").as_bytes());
        assert_eq!(c.codes(3), vec![250, 250, 354]);
        c.send(format!("{extra_header}Subject: {from} {i}\r\n\r\nhi\r\n.\r\n").as_bytes());
        assert_eq!(c.codes(1), vec![250]);
    }
}

#[test]
fn pools_pick_sources_by_weight_header_and_sender() {
    let (port, seen) = receiver();
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\nmax_messages_per_connection = 1\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             [[sources]]\nname = \"a\"\naddress = \"127.0.0.2\"\nehlo = \"a.mta.test\"\n\
             [[sources]]\nname = \"b\"\naddress = \"127.0.0.3\"\nehlo = \"b.mta.test\"\n\
             [[sources]]\nname = \"c\"\naddress = \"127.0.0.4\"\n\
             [[pools]]\nname = \"bulk\"\nsources = [{{ source = \"a\", weight = 1 }}, {{ source = \"b\", weight = 3 }}]\n\
             [[pools]]\nname = \"vip\"\nsources = [{{ source = \"c\" }}]\n\
             [pool_selection]\nheader = \"X-Pool\"\ndefault = \"bulk\"\n\
             [[pool_selection.senders]]\ndomain = \"vip.test\"\npool = \"vip\"\n"
        ),
    );
    let mut mta = Mta::start(dir.path(), &config);
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    send(&mut c, "n@news.test", "", 60);
    send(&mut c, "x@vip.test", "", 5);
    send(&mut c, "h@news.test", "X-Pool: vip\r\n", 5);
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < 70 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(mta.stop().success());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 70, "every message delivered");
    let mut bulk: HashMap<&str, usize> = HashMap::new();
    for (ip, helo, from, _) in seen.iter() {
        if from.contains("n@news.test") {
            *bulk.entry(ip.as_str()).or_default() += 1;
            match ip.as_str() {
                "127.0.0.2" => assert_eq!(helo, "a.mta.test"),
                "127.0.0.3" => assert_eq!(helo, "b.mta.test"),
                other => panic!("bulk mail from {other}"),
            }
        } else {
            assert_eq!(ip, "127.0.0.4", "{from} from the vip pool");
            assert_eq!(helo, "mx.test", "no ehlo set: the host name");
        }
    }
    let (a, b) = (bulk["127.0.0.2"], bulk["127.0.0.3"]);
    assert_eq!(a + b, 60);
    assert!(a >= 3 && b > a, "weights 1:3 gave {a}:{b}");
}

#[test]
fn unknown_pool_names_are_refused_naming_the_key() {
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        "[[sources]]\nname = \"a\"\naddress = \"127.0.0.2\"\n\
         [[pools]]\nname = \"bulk\"\nsources = [{ source = \"nope\" }]\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pools[0].sources[0].source"), "{err}");
}

#[test]
fn a_route_source_address_is_used() {
    let (port, seen) = receiver();
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\n[[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             source = \"127.0.0.5\"\n"
        ),
    );
    let mut mta = Mta::start(dir.path(), &config);
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    send(&mut c, "s@src.test", "", 3);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(mta.stop().success());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(ip, ..)| ip == "127.0.0.5"), "{seen:?}");
}

/// Every shard's entries under `sources` of a `mta dest show` answer.
fn source_queues(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["sources"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn destination_commands_cover_every_source_of_a_pool() {
    let rx = Scripted::start(false, 0);
    let down = closed_port();
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\nmax_messages_per_connection = 1\n\
             [delivery.retry]\nfirst = \"1h\"\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{}\"]\n\
             [[routes]]\ndomain = \"down.test\"\nhosts = [\"127.0.0.1:{down}\"]\n\
             [[sources]]\nname = \"a\"\naddress = \"127.0.0.2\"\n\
             [[sources]]\nname = \"b\"\naddress = \"127.0.0.3\"\n\
             [[pools]]\nname = \"bulk\"\nsources = [{{ source = \"a\" }}, {{ source = \"b\" }}]\n\
             [pool_selection]\ndefault = \"bulk\"\n",
            rx.port
        ),
    );
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");

    // Suspended before any mail is queued: the sources' queues made later are suspended too.
    let v = mta_cli_json(
        admin,
        &config,
        &["dest", "suspend", "dest.test", "--for", "1h"],
    );
    assert_eq!(v["shards"][0]["destination"], "route:dest.test", "{v}");
    for i in 0..6 {
        submit(&mta, &["u@dest.test"], &format!("held {i}"));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(rx.got.lock().unwrap().is_empty(), "sent while suspended");

    let v = mta_cli_json(admin, &config, &["dest", "show", "dest.test"]);
    let queues = source_queues(&v);
    assert!(!queues.is_empty(), "each source's queue is listed: {v}");
    let mut ready = 0;
    for q in &queues {
        let (key, source) = (q["destination"].as_str().unwrap(), &q["source"]);
        let address = match source.as_str().unwrap() {
            "a" => "127.0.0.2",
            "b" => "127.0.0.3",
            other => panic!("source {other}: {v}"),
        };
        assert_eq!(key, format!("route:dest.test@{}", source.as_str().unwrap()));
        assert_eq!(q["source_address"], address, "{q}");
        assert_eq!(
            q["suspended"]["reason"], "suspended by an administrator",
            "{q}"
        );
        ready += q["ready_new"].as_u64().unwrap();
    }
    assert_eq!(ready, 6, "every message waits in a source's queue: {v}");

    let v = mta_cli_json(admin, &config, &["dest", "resume", "dest.test"]);
    let resumed: usize = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sources"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(resumed, queues.len(), "{v}");
    let got = rx.wait_for(6, Duration::from_secs(20));
    assert_eq!(got.len(), 6, "delivered once resumed");
    assert!(
        got.iter()
            .all(|m| m.client == "127.0.0.2" || m.client == "127.0.0.3"),
        "{got:?}"
    );

    // Deferred mail is flushed by the destination's key, whichever source it went through.
    submit(&mta, &["u@down.test"], "down 1");
    submit(&mta, &["v@down.test"], "down 2");
    let deadline = Instant::now() + Duration::from_secs(20);
    let deferrals = loop {
        let lines: Vec<serde_json::Value> = event_log(dir.path())
            .into_iter()
            .filter(|l| l["type"] == "TransientFailure")
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(Instant::now() < deadline, "no deferrals");
        std::thread::sleep(Duration::from_millis(100));
    };
    for l in &deferrals {
        let d = l["destination"].as_str().unwrap();
        assert!(d.starts_with("route:down.test@"), "{l}");
    }
    let flush = |key: &str| {
        let v = mta_cli_json(admin, &config, &["queue", "flush", "--destination", key]);
        v["flushed"].as_u64().unwrap()
    };
    assert_eq!(flush("route:down.test@nosuch"), 0);
    assert_eq!(flush("route:down.test"), 2);
    assert!(mta.stop().success());
}
