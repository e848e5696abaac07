//! Tests of the event log: escaping, rotation by size, line ids and versions, torn lines.

use super::*;
use crate::config::{ByteSize, HumanDuration};

#[test]
fn escapes() {
    let mut out = Vec::new();
    json(&mut out, "a\"b\\c\r\né");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "\"a\\\"b\\\\c\\u000d\\u000aé\""
    );
}

#[test]
fn lines_are_json_and_the_file_rotates_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogSection {
        dir: dir.path().to_owned(),
        rotate_size: ByteSize(300),
        rotate_interval: HumanDuration::secs(3600),
        keep: HumanDuration::secs(3600),
    };
    let log = EventLog::new(&cfg, 3).unwrap();
    for i in 0..3 {
        log.reception(&Reception {
            queue_id: &format!("{i:016X}"),
            sender: "a@b.test",
            recipients: &["x@y.test", "z@y.test"],
            size: 100,
            client: "192.0.2.1",
            helo: "c.test",
            tls: "",
            auth: "",
            message_id: "<m@x>",
            campaign: "",
            tenant: "",
            priority: "bulk",
        });
        log.rejection(&Rejection {
            stage: "rcpt",
            sender: "a@b.test",
            recipient: "no@where.test",
            reply: "554 5.7.1 <no@where.test>: Relay access denied",
            client: "192.0.2.1",
        });
        log.flush();
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 2, "rotated: {names:?}");
    assert!(names.contains(&"delivery-3.jsonl".to_owned()));
    let mut lines = 0;
    for n in &names {
        for line in std::fs::read_to_string(dir.path().join(n)).unwrap().lines() {
            assert!(
                line.starts_with("{\"type\":\"Re") && line.ends_with('}'),
                "{line}"
            );
            lines += 1;
        }
    }
    assert_eq!(lines, 6, "nothing lost across rotations");
}

#[test]
fn every_line_has_an_id_and_the_version_and_a_torn_line_stays_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogSection {
        dir: dir.path().to_owned(),
        rotate_size: ByteSize::mib(1),
        rotate_interval: HumanDuration::secs(3600),
        keep: HumanDuration::secs(3600),
    };
    std::fs::write(dir.path().join("delivery-1.jsonl"), "{\"type\":\"Recep").unwrap();
    let log = EventLog::new(&cfg, 1).unwrap();
    for _ in 0..2 {
        log.rejection(&Rejection {
            stage: "data",
            sender: "",
            recipient: "",
            reply: "550",
            client: "192.0.2.1",
        });
    }
    log.flush();
    let text = std::fs::read_to_string(dir.path().join("delivery-1.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "{\"type\":\"Recep");
    let ids: Vec<String> = lines[1..]
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["v"], SCHEMA_VERSION);
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(
        ids[0].starts_with("1-") && ids[0].ends_with("-1"),
        "{ids:?}"
    );
    assert_ne!(ids[0], ids[1]);
}
