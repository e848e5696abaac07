//! `loadgen send` into `loadgen sink` through real sockets: integrity, counts, fault injection,
//! STARTTLS on both sides, and the MTA itself as a target (plaintext and TLS benches).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// The mta binary: next to loadgen in the same target directory, else the workspace default.
fn mta_binary() -> String {
    let sibling = std::path::Path::new(LOADGEN).with_file_name("mta");
    let mta = if sibling.exists() {
        sibling.display().to_string()
    } else {
        env!("CARGO_MANIFEST_DIR").to_owned() + "/../target/debug/mta"
    };
    assert!(
        std::path::Path::new(&mta).exists(),
        "the mta binary is built by `cargo test --workspace` (or `cargo build --bin mta`)"
    );
    mta
}

struct Sink {
    child: Child,
    addr: String,
}

impl Sink {
    fn start(extra: &[&str]) -> Sink {
        let mut child = Command::new(LOADGEN)
            .args([
                "sink",
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "2",
                "--idle",
                "2s",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sink");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let line = lines.next().expect("sink prints its address").unwrap();
        let addr = line.rsplit(' ').next().unwrap().to_owned();
        Sink { child, addr }
    }

    /// Waits for the sink to stop on its idle limit and returns its JSON report.
    fn finish(mut self, json: &std::path::Path) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "sink did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(target: &str, args: &[&str], json: &std::path::Path) -> (bool, serde_json::Value) {
    let out = Command::new(LOADGEN)
        .args(["send", "--target", target, "-q", "--json"])
        .arg(json)
        .args(args)
        .output()
        .expect("run send");
    let report = serde_json::from_str(&std::fs::read_to_string(json).unwrap())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), report)
}

#[test]
fn send_into_sink_with_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let sink_json = dir.path().join("sink.json");
    let sink = Sink::start(&["--json", sink_json.to_str().unwrap()]);
    let (ok, report) = send(
        &sink.addr,
        &[
            "-c",
            "8",
            "-n",
            "2000",
            "--recipients",
            "2",
            "--generated-domains",
            "5",
            "--size",
            "200-6000",
        ],
        &dir.path().join("send.json"),
    );
    assert!(ok, "{report}");
    assert_eq!(report["ok"], 2000);
    assert_eq!(report["attempted"], 2000);
    let counts = sink.finish(&sink_json);
    assert_eq!(counts["messages"], 2000);
    assert_eq!(counts["recipients"], 4000);
    assert_eq!(counts["checked"], 2000);
    assert_eq!(counts["corrupt"], 0);
    assert_eq!(counts["duplicates"], 0);
    assert_eq!(counts["domains"].as_object().unwrap().len(), 5);
}

#[test]
fn sink_stops_after_a_count_of_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let sink_json = dir.path().join("sink.json");
    let sink = Sink::start(&[
        "--count-recipients",
        "1000",
        "--json",
        sink_json.to_str().unwrap(),
    ]);
    // 10,000 recipients offered: the sink stops once it has 1,000, and the rest fail.
    let _ = send(
        &sink.addr,
        &["-c", "2", "-n", "5000", "--recipients", "2"],
        &dir.path().join("send.json"),
    );
    let counts = sink.finish(&sink_json);
    let recipients = counts["recipients"].as_u64().unwrap();
    assert!((1000..10_000).contains(&recipients), "{counts}");
}

#[test]
fn bdat_and_lockstep_modes() {
    let dir = tempfile::tempdir().unwrap();
    let sink_json = dir.path().join("sink.json");
    let sink = Sink::start(&["--json", sink_json.to_str().unwrap()]);
    let (ok, r) = send(
        &sink.addr,
        &["-c", "4", "-n", "300", "--bdat"],
        &dir.path().join("a.json"),
    );
    assert!(ok && r["ok"] == 300, "{r}");
    let (ok, r) = send(
        &sink.addr,
        &["-c", "4", "-n", "300", "--no-pipelining"],
        &dir.path().join("b.json"),
    );
    assert!(ok && r["ok"] == 300, "{r}");
    let counts = sink.finish(&sink_json);
    assert_eq!(counts["messages"], 600);
    assert_eq!(counts["corrupt"], 0);
}

#[test]
fn injected_faults_show_in_the_senders_counts() {
    let dir = tempfile::tempdir().unwrap();
    let sink_json = dir.path().join("sink.json");
    let sink = Sink::start(&[
        "--json",
        sink_json.to_str().unwrap(),
        "--fault",
        "rcpt:451:10",
        "--fault",
        "data:550:5",
    ]);
    let (ok, report) = send(
        &sink.addr,
        &["-c", "8", "-n", "4000", "--max-error-rate", "0.5"],
        &dir.path().join("send.json"),
    );
    assert!(ok, "{report}");
    let counts = sink.finish(&sink_json);
    let injected_rcpt = counts["injected"]["rcpt:451"].as_u64().unwrap();
    let injected_data = counts["injected"]["data:550"].as_u64().unwrap();
    // The sender's view matches the sink's injections exactly.
    assert_eq!(report["replies"]["451"].as_u64().unwrap(), injected_rcpt);
    assert_eq!(report["replies"]["550"].as_u64().unwrap(), injected_data);
    assert_eq!(
        report["ok"].as_u64().unwrap(),
        counts["messages"].as_u64().unwrap()
    );
    // And the shares are about what was asked (10% of 4000, 5% of the rest).
    assert!((250..=550).contains(&injected_rcpt), "{injected_rcpt}");
    assert!((100..=300).contains(&injected_data), "{injected_data}");
    // Over the error threshold the sender exits non-zero.
    let sink2 = Sink::start(&["--fault", "rcpt:550:100"]);
    let (ok, report) = send(
        &sink2.addr,
        &["-c", "2", "-n", "50"],
        &dir.path().join("bad.json"),
    );
    assert!(!ok, "{report}");
    assert_eq!(report["refused_5xx"], 50);
}

#[test]
fn sends_to_the_mta() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let config = dir.path().join("mta.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"mx.test\"\nshards = 2\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
             [spool]\npath = \"{}\"\nmin_free_space = 0\nmin_free_percent = 0.0\n\
             [delivery]\nhold = true\n[log]\ndir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            spool.display(),
            dir.path().join("log").display()
        ),
    )
    .unwrap();
    let mta = mta_binary();
    let mut child = Command::new(&mta)
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut addr = None;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(i) = line.find("listening on ") {
            addr = Some(line[i + 13..].trim().to_owned());
        }
        if line.contains(" ready") {
            break;
        }
    }
    let addr = addr.expect("mta listens");
    let (ok, report) = send(
        &addr,
        &["-c", "10", "-n", "1000"],
        &dir.path().join("send.json"),
    );
    // SAFETY: kill(2) on the PID of the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert!(ok, "{report}");
    assert_eq!(report["ok"], 1000);
}

#[test]
fn bench_runs_end_to_end_and_its_card_parses() {
    let dir = tempfile::tempdir().unwrap();
    let mta = mta_binary();
    let json = dir.path().join("card.json");
    let out = Command::new(LOADGEN)
        .args([
            "bench",
            "-n",
            "2000",
            "-c",
            "10",
            "--shards",
            "2",
            "--mta",
            &mta,
            "--spool-dir",
        ])
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .args(["--deadline", "120s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(card["accepted"], 2000);
    assert_eq!(card["delivered"], 2000);
    assert_eq!(card["complete"], true);
    assert_eq!(card["corrupt"], 0);
    assert!(card["delivered_per_s"].as_f64().unwrap() > 0.0);
    // Progress on standard error: each phase named, and a line per second of sending.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wire limit: 2000 messages"), "{err}");
    assert!(err.contains("through the MTA at 127.0.0.1:"), "{err}");
    assert!(card["baseline_wire_per_s"].as_f64().unwrap() > 0.0);
    assert!(card["mta_peak_rss_kib"].as_u64().unwrap() > 0);
}

#[test]
fn starttls_send_into_tls_sink() {
    let dir = tempfile::tempdir().unwrap();
    let sink_json = dir.path().join("sink.json");
    let sink = Sink::start(&["--tls", "--json", sink_json.to_str().unwrap()]);
    let (ok, report) = send(
        &sink.addr,
        &["-c", "4", "-n", "600", "--starttls", "--size", "200-6000"],
        &dir.path().join("send.json"),
    );
    assert!(ok, "{report}");
    assert_eq!(report["ok"], 600);
    assert_eq!(report["settings"]["starttls"], true);
    let version = report["tls"]["version"].as_str().unwrap();
    assert!(version == "TLSv1.3" || version == "TLSv1.2", "{report}");
    assert!(report["tls"]["cipher"].as_str().unwrap().starts_with("TLS"));
    // BDAT over TLS too.
    let (ok, report) = send(
        &sink.addr,
        &["-c", "2", "-n", "100", "--starttls", "--bdat"],
        &dir.path().join("bdat.json"),
    );
    assert!(ok && report["ok"] == 100, "{report}");
    let counts = sink.finish(&sink_json);
    assert_eq!(counts["messages"], 700);
    assert_eq!(counts["checked"], 700);
    assert_eq!(counts["corrupt"], 0);
    assert_eq!(counts["duplicates"], 0);
    assert_eq!(counts["tls_sessions"], counts["connections"]);
    assert!(counts["tls_sessions"].as_u64().unwrap() >= 6, "{counts}");
}

#[test]
fn starttls_against_a_plaintext_sink_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&[]);
    let json = dir.path().join("send.json");
    let started = Instant::now();
    let mut child = Command::new(LOADGEN)
        .args(["send", "--target", &sink.addr, "-q", "--starttls"])
        .args(["-c", "3", "-n", "100", "--json"])
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("send --starttls hung against a sink without TLS");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["ok"], 0);
    assert!(report["connect_errors"].as_u64().unwrap() > 0, "{report}");
    assert!(report["tls"].is_null());
    let error = report["first_error"].as_str().unwrap();
    assert!(error.contains("does not offer STARTTLS"), "{error}");
}

#[test]
fn bench_with_tls_on_both_legs() {
    let dir = tempfile::tempdir().unwrap();
    let mta = mta_binary();
    let json = dir.path().join("card.json");
    let mut child = Command::new(LOADGEN)
        .args(["bench", "--tls", "-n", "300", "-c", "10", "--shards", "2"])
        .args(["--mta", &mta, "--spool-dir"])
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .args(["--deadline", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(150) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench --tls did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(status.success(), "{card}");
    assert_eq!(card["tls"], true);
    assert_eq!(card["mta"]["tls"], true);
    assert_eq!(card["load"]["starttls"], true);
    assert!(card["load_tls"]["version"].is_string(), "{card}");
    assert_eq!(card["accepted"], 300);
    assert_eq!(card["delivered"], 300);
    assert_eq!(card["complete"], true);
    assert_eq!(card["corrupt"], 0);
    // The MTA's outbound leg upgraded too: the sink saw TLS sessions.
    assert!(card["sink_tls_sessions"].as_u64().unwrap() > 0, "{card}");
}
