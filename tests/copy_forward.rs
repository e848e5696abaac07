//! Copy-forward through the binary: one message deferred for a long time does not keep its
//! spool segment alive while newer mail flows; after a restart it is still queued, once.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Client, Mta, queue_counts, tempdir, write_config};

/// Takes every message.
fn receiver() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = stream.write_all(b"220 rx.test ESMTP\r\n");
                let (mut line, mut data) = (String::new(), false);
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if data {
                        if line == ".\r\n" {
                            data = false;
                            b"250 2.0.0 ok\r\n"
                        } else {
                            b""
                        }
                    } else if upper.starts_with("EHLO") {
                        b"250-rx.test\r\n250 PIPELINING\r\n"
                    } else if upper.starts_with("DATA") {
                        data = true;
                        b"354 go\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = stream.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 2.0.0 ok\r\n"
                    };
                    if stream.write_all(reply).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

fn segments(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("spool/shard-0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

fn count(config: &std::path::Path, key: &str) -> u64 {
    queue_counts(config)[key]
}

#[test]
fn a_deferred_message_does_not_keep_its_segment() {
    let port = receiver();
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\n[delivery.retry]\nfirst = \"1h\"\n\
             [[routes]]\ndomain = \"stuck.test\"\nhosts = [\"127.0.0.1:9\"]\n\
             [[routes]]\ndomain = \"fast.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen("shards = 2\n", "shards = 1\n", 1).replacen(
        "[spool]\n",
        "[spool]\nsegment_size = \"1MiB\"\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut mta = Mta::start(dir.path(), &config);
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    c.send(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<u@stuck.test>\r\nDATA\r\n");
    assert_eq!(c.codes(3), vec![250, 250, 354]);
    c.send(b"Subject: stuck\r\n\r\nwaits a long time\r\n.\r\n");
    assert_eq!(c.codes(1), vec![250]);
    let first = segments(dir.path())[0].clone();
    let body = format!("Subject: flow\r\n\r\n{}\r\n.\r\n", "y".repeat(4000));
    for i in 0..700 {
        c.send(
            format!("MAIL FROM:<a@src.test>\r\nRCPT TO:<u{i}@fast.test>\r\nDATA\r\n").as_bytes(),
        );
        assert_eq!(c.codes(3), vec![250, 250, 354]);
        c.send(body.as_bytes());
        assert_eq!(c.codes(1), vec![250]);
    }
    // Delivered mail lets segments go; the stuck message must not keep the first one.
    let deadline = Instant::now() + Duration::from_secs(30);
    while segments(dir.path()).contains(&first) && Instant::now() < deadline {
        // New segments open only as mail arrives: keep a trickle going.
        c.send(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<late@fast.test>\r\nDATA\r\n");
        assert_eq!(c.codes(3), vec![250, 250, 354]);
        c.send(body.as_bytes());
        assert_eq!(c.codes(1), vec![250]);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !segments(dir.path()).contains(&first),
        "the first segment is still there: {:?}",
        segments(dir.path())
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&config, "queued") > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(mta.stop().success());
    assert_eq!(
        count(&config, "queued"),
        1,
        "the stuck message is still queued, once"
    );
    let mut mta = Mta::start(dir.path(), &config);
    assert!(mta.stop().success());
    assert_eq!(count(&config, "queued"), 1);
    assert_eq!(count(&config, "accepted"), count(&config, "delivered") + 1);
}
