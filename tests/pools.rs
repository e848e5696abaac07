//! Source pools through real sockets: messages leave from the loopback addresses of their pool
//! (127.0.0.2-4), in proportion to the weights, with each source's EHLO name; the pool is
//! chosen by header, by sender domain, or by default.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, Mta, tempdir, write_config};

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
