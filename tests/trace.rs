//! `mta trace` finds a message's events in the event log by Message-ID, recipient or queue
//! id, through a running binary that delivered it to a scripted receiver.

mod common;

use std::process::Command;
use std::time::Duration;

use common::receiver::Scripted;
use common::{Client, Mta, tempdir, write_config};

fn trace(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mta"))
        .arg("trace")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("mta runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_message_is_traced_by_message_id_recipient_and_queue_id() {
    let dir = tempdir();
    let rx = Scripted::start(false, 0);
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\n[[routes]]\ndomain = \"t.test\"\nhosts = [\"127.0.0.1:{}\"]\n",
            rx.port
        ),
    );
    let mut mta = Mta::start(dir.path(), &config);
    let mut ids = Vec::new();
    for (to, mid) in [
        ("Ann@t.test", "<one.1@shop.test>"),
        ("bob@t.test", "<two.2@shop.test>"),
    ] {
        let mut c = Client::connect(mta.addr);
        c.codes(1);
        c.send(b"EHLO c.test\r\n");
        c.reply();
        c.send(format!("MAIL FROM:<news@shop.test>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes());
        assert_eq!(c.codes(3), [250, 250, 354]);
        c.send(format!("Message-ID:\r\n {mid}\r\nSubject: s\r\n\r\nhi\r\n.\r\n").as_bytes());
        let r = c.reply().unwrap();
        ids.push(r.split_whitespace().last().unwrap().to_owned());
    }
    assert_eq!(rx.wait_for(2, Duration::from_secs(20)).len(), 2);
    // The log is written at least once a second and at the stop.
    assert!(mta.stop().success());

    let (ok, out, err) = trace(&config, &["<one.1@shop.test>"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("Reception") && lines[0].contains(&ids[0]),
        "{out}"
    );
    assert!(lines[0].contains("message-id <one.1@shop.test>"), "{out}");
    assert!(
        lines[1].contains("Delivery") && lines[1].contains("Ann@t.test"),
        "{out}"
    );
    assert!(!out.contains(&ids[1]), "{out}");

    // By recipient (any case), and by queue id as JSON lines.
    let (ok, out, _) = trace(&config, &["BOB@t.test"]);
    assert!(
        ok && out.lines().count() == 2 && out.contains(&ids[1]),
        "{out}"
    );
    let (ok, out, _) = trace(&config, &[&ids[1], "--json"]);
    assert!(ok, "{out}");
    let types: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string())
        .collect();
    assert_eq!(types, ["\"Reception\"", "\"Delivery\""]);

    // Nothing matches: said, and a failure status.
    let (ok, _, err) = trace(&config, &["<none@x>"]);
    assert!(!ok && err.contains("no event"), "{err}");
}
