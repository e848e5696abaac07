//! The log on standard error: plain text without colour codes when standard error is not a
//! terminal (journald, a file, a pipe), one JSON object per line with `MTA_LOG_FORMAT=json`,
//! and a clear refusal of an unknown format.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{tempdir, write_config};

/// Starts `mta run` with `format`, collects standard error until the "ready" line, stops it.
fn start_up_log(format: Option<&str>) -> Vec<String> {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mta"));
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("MTA_LOG", "info")
        .env_remove("MTA_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(f) = format {
        cmd.env("MTA_LOG_FORMAT", f);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let ready = line.contains("ready");
                lines.push(line);
                if ready {
                    break;
                }
            }
            Err(_) if child.try_wait().unwrap().is_some() => break,
            Err(_) => {}
        }
    }
    // SAFETY: kill(2) on the PID of a child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    lines
}

#[test]
fn text_logs_have_no_colour_codes_off_a_terminal() {
    let lines = start_up_log(None);
    assert!(lines.iter().any(|l| l.contains("ready")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let lines = start_up_log(Some("json"));
    assert!(!lines.is_empty());
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"ready\"") || l.contains("ready")),
        "{lines:?}"
    );
}

#[test]
fn an_unknown_log_format_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["check-config"])
        .env("MTA_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MTA_LOG_FORMAT"));
}
