//! Traffic shaping through a running binary: a shaping file's rule suspends a destination when
//! the receiver says so, `mta dest show` explains it, and failures are logged and counted with
//! their bounce class.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Mta, event_log, submit, tempdir, write_config};

/// Refuses `bad@` with 550 5.1.1, throttles `slow@` with 451 4.7.0, takes the rest.
fn receiver() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = stream.write_all(b"220 rx.test ESMTP\r\n");
                let (mut line, mut data, mut ok) = (String::new(), false, 0);
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let reply: String = if data {
                        if line == ".\r\n" {
                            data = false;
                            "250 2.0.0 queued\r\n".into()
                        } else {
                            String::new()
                        }
                    } else {
                        let upper = line.to_ascii_uppercase();
                        if upper.starts_with("EHLO") {
                            "250 rx.test\r\n".into()
                        } else if upper.starts_with("RCPT") && line.contains("bad@") {
                            "550 5.1.1 The email account that you tried to reach does not exist\r\n"
                                .into()
                        } else if upper.starts_with("RCPT") && line.contains("slow@") {
                            "451 4.7.0 slow down please\r\n".into()
                        } else if upper.starts_with("RCPT") {
                            ok += 1;
                            "250 2.1.5 ok\r\n".into()
                        } else if upper.starts_with("DATA") {
                            if ok == 0 {
                                "554 5.5.1 no valid recipients\r\n".into()
                            } else {
                                data = true;
                                "354 go\r\n".into()
                            }
                        } else if upper.starts_with("QUIT") {
                            let _ = stream.write_all(b"221 bye\r\n");
                            return;
                        } else {
                            ok = 0;
                            "250 2.0.0 ok\r\n".into()
                        }
                    };
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

#[test]
fn a_rule_suspends_the_destination_and_failures_are_classified() {
    let port = receiver();
    let dir = tempdir();
    let shaping = dir.path().join("shaping.toml");
    std::fs::write(
        &shaping,
        "[default]\nmax_connections = 2\n[domain.\"dest.test\"]\nmax_messages_per_connection = 10\n\
         [[rule]]\nname = \"slow down\"\nmatch_code = 451\nmatch_text = \"(?i)slow down\"\n\
         action = \"suspend\"\nduration = \"1h\"\ntrigger = \"immediately\"\n",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        "shards = 1",
        &format!(
            "[delivery]\nshaping_file = \"{}\"\n[delivery.retry]\nfirst = \"1h\"\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n",
            shaping.display()
        ),
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replacen("shards = 2\n", "", 1)).unwrap();
    let mut mta = Mta::start(dir.path(), &config);
    submit(&mta, &["bad@dest.test"], "shaping");
    submit(&mta, &["slow@dest.test"], "shaping");
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let lines = event_log(dir.path());
        let done = lines.iter().any(|v| v["type"] == "Bounce")
            && lines.iter().any(|v| v["type"] == "TransientFailure");
        if done || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let bounce = lines
        .iter()
        .find(|v| v["type"] == "Bounce")
        .expect("a bounce");
    assert_eq!(bounce["class"], "bad_mailbox", "{bounce}");
    let deferral = lines
        .iter()
        .find(|v| v["type"] == "TransientFailure")
        .expect("a deferral");
    assert_eq!(deferral["class"], "policy", "{deferral}");

    let admin = mta.admin.expect("admin");
    let out = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["dest", "show", "dest.test", "--json", "--url"])
        .arg(format!("http://{admin}"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shard = &v["shards"][0];
    assert!(
        shard["why"].as_str().unwrap().starts_with("suspended"),
        "{v}"
    );
    assert!(
        shard["suspended"]["reason"]
            .as_str()
            .unwrap()
            .contains("slow down"),
        "{v}"
    );
    assert_eq!(shard["limits"]["max_connections"], 2, "shaped limit: {v}");
    assert_eq!(shard["limits"]["max_messages_per_connection"], 10, "{v}");

    let out = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["metrics", "--url"])
        .arg(format!("http://{admin}"))
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert!(
        metrics.contains("mta_delivery_failures_total{shard=\"0\",class=\"bad_mailbox\"} 1"),
        "{metrics}"
    );
    assert!(mta.stop().success());
}

#[test]
fn a_bad_shaping_file_stops_the_start_naming_it() {
    let dir = tempdir();
    let shaping = dir.path().join("shaping.toml");
    std::fs::write(&shaping, "[default]\nmessage_rate = \"fast\"\n").unwrap();
    let config = write_config(
        dir.path(),
        "",
        &format!("[delivery]\nshaping_file = \"{}\"\n", shaping.display()),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("message_rate"), "{err}");
}
