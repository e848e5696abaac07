//! Shared helpers for the integration tests: start the `mta` binary on a temporary spool
//! with a generated configuration, find its port, talk raw SMTP, and stop it by PID.
#![allow(dead_code)]

pub mod certs;
pub mod dkim;
pub mod https;
pub mod receiver;
pub mod redis;
pub mod smarthost;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `mta run` process.
pub struct Mta {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every listener's address, in configuration order (`addr` is the first).
    pub addrs: Vec<SocketAddr>,
    /// The admin endpoint, if it is on.
    pub admin: Option<SocketAddr>,
    pub dir: PathBuf,
    pub config: PathBuf,
    log: mpsc::Receiver<String>,
    pub log_lines: Vec<String>,
}

/// A temporary directory kept for the life of a test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mta-test")
        .tempdir()
        .expect("tempdir")
}

/// Writes a configuration listening on 127.0.0.1:0 with the spool and logs in `dir`; `extra`
/// is appended verbatim (TOML sections). Unless `extra` has a `[delivery]` section, delivery is
/// on hold (acceptance tests never look anything up in DNS).
pub fn write_config(dir: &Path, top: &str, extra: &str) -> PathBuf {
    let path = dir.join("mta.toml");
    let hold = if extra.contains("[delivery]") {
        ""
    } else {
        "[delivery]\nhold = true\n"
    };
    // Tests run side by side: each instance gets its own admin port.
    let admin = if extra.contains("[admin]") {
        ""
    } else {
        "[admin]\nlisten = \"127.0.0.1:0\"\n"
    };
    let text = format!(
        "hostname = \"mx.test\"\nshards = 2\n{top}\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [log]\ndir = \"{}\"\n[spool]\npath = \"{}\"\nmin_free_space = 0\nmin_free_percent = 0.0\n\
         {hold}{admin}{extra}\n",
        dir.join("log").display(),
        dir.join("spool").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

impl Mta {
    /// Starts `mta run --config <config>` and waits until it listens.
    pub fn start(dir: &Path, config: &Path) -> Mta {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mta"))
            .args(["run", "--config"])
            .arg(config)
            .env("MTA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mta");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut mta = Mta {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            addrs: Vec::new(),
            admin: None,
            dir: dir.to_owned(),
            config: config.to_owned(),
            log: rx,
            log_lines: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut addrs: Vec<SocketAddr> = Vec::new();
        while Instant::now() < deadline {
            match mta.log.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(i) = line.find("listening on ") {
                        let a = line[i + 13..].split_whitespace().next().unwrap();
                        addrs.push(a.parse().expect("listen address"));
                    }
                    if let Some(i) = line.find("admin API on ") {
                        let a = line[i + 13..].split_whitespace().next().unwrap();
                        mta.admin = Some(a.parse().expect("admin address"));
                    }
                    let ready = line.contains(" ready");
                    mta.log_lines.push(line);
                    if ready && !addrs.is_empty() {
                        mta.addr = addrs[0];
                        mta.addrs = addrs;
                        return mta;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = mta.child.try_wait() {
                        panic!("mta exited during start-up: {status}: {:?}", mta.log_lines);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = mta.child.kill();
        panic!("mta did not become ready: {:?}", mta.log_lines);
    }

    /// Collects log lines printed so far.
    pub fn drain_log(&mut self) -> &[String] {
        while let Ok(line) = self.log.try_recv() {
            self.log_lines.push(line);
        }
        &self.log_lines
    }

    /// Sends a signal to the process (by its PID).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child we started.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Sends SIGHUP and waits (at most 10 s) until both shards of a `write_config`
    /// configuration logged `configuration reloaded`.
    pub fn reload(&mut self) {
        let count = |mta: &mut Mta| {
            mta.drain_log()
                .iter()
                .filter(|l| l.contains("configuration reloaded"))
                .count()
        };
        let before = count(self);
        self.signal(libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(self) < before + 2 {
            assert!(Instant::now() < deadline, "no reload: {:?}", self.log_lines);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait(Duration::from_secs(40)) {
            Some(status) => status,
            None => {
                self.kill();
                panic!("mta did not stop after SIGTERM");
            }
        }
    }
}

impl Drop for Mta {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// A raw SMTP client over a plain socket.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects and returns the client (the greeting is left unread).
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads one complete (possibly multi-line) reply; returns its text with CRLFs. `None` on
    /// EOF.
    pub fn reply(&mut self) -> Option<String> {
        let mut text = String::new();
        loop {
            let line = self.line()?;
            let last = line.len() < 4 || line.as_bytes()[3] == b' ';
            text.push_str(&line);
            if last {
                return Some(text);
            }
        }
    }

    /// Reads `n` replies and returns their codes.
    pub fn codes(&mut self, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| {
                let r = self.reply().expect("reply");
                r[..3].parse().expect("reply code")
            })
            .collect()
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// True if the server closed the connection (EOF with nothing buffered).
    pub fn closed(&mut self) -> bool {
        self.line().is_none()
    }
}

/// The accounting that `mta queue count --config <config>` prints, by name (`accepted`,
/// `delivered`, `bounced`, `expired`, `queued`, `messages`).
pub fn queue_counts(config: &Path) -> std::collections::HashMap<String, u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["queue", "count", "--config"])
        .arg(config)
        .output()
        .expect("mta queue count");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.parse().ok()?))
        })
        .collect()
}

/// Every line of both shards' event logs of the MTA whose directory is `dir`, parsed.
pub fn event_log(dir: &Path) -> Vec<serde_json::Value> {
    (0..2)
        .flat_map(|i| {
            std::fs::read_to_string(dir.join(format!("log/delivery-{i}.jsonl")))
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect::<Vec<serde_json::Value>>()
        })
        .collect()
}

/// Sends one message from `a@src.test` to `rcpts` (pipelined, on a fresh connection) and
/// returns its queue id; panics unless every reply is positive.
pub fn submit(mta: &Mta, rcpts: &[&str], subject: &str) -> String {
    submit_message(
        mta,
        "a@src.test",
        rcpts,
        &format!("Subject: {subject}\r\n\r\nhello\r\n"),
    )
}

/// Sends `message` (CRLF lines, not dot-stuffed) from `from` to `rcpts` (pipelined, on a
/// fresh connection) and returns its queue id; panics unless every reply is positive.
pub fn submit_message(mta: &Mta, from: &str, rcpts: &[&str], message: &str) -> String {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    let mut cmd = format!("MAIL FROM:<{from}>\r\n");
    for r in rcpts {
        cmd.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    cmd.push_str("DATA\r\n");
    c.send(cmd.as_bytes());
    let mut want = vec![250; rcpts.len() + 1];
    want.push(354);
    assert_eq!(c.codes(rcpts.len() + 2), want);
    c.send(format!("{message}.\r\n").as_bytes());
    let r = c.reply().unwrap();
    assert!(r.starts_with("250"), "{r}");
    r.split_whitespace().last().unwrap().to_owned()
}

/// Waits (up to 30 s) until `pred` holds of the event log; returns the log.
pub fn wait_log(
    dir: &Path,
    what: &str,
    pred: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = event_log(dir);
        if pred(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in the event log: {log:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `mta <args> --config <config> --url http://<admin>`; returns (success, stdout, stderr).
pub fn mta_cli(admin: SocketAddr, config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--url")
        .arg(format!("http://{admin}"))
        .output()
        .expect("mta runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`mta_cli`] with `--json`: the answer, parsed; panics if the command failed.
pub fn mta_cli_json(admin: SocketAddr, config: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = mta_cli(admin, config, &all);
    assert!(ok, "mta {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A loopback port with nothing listening on it (bound, then let go).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

/// Sends one raw HTTP/1.1 request to `admin` and returns the response's status code.
pub fn http_status(admin: SocketAddr, request: &str) -> u16 {
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `mta passwd` makes a users file line.
pub fn users_file(dir: &std::path::Path, name: &str, password: &str) -> std::path::PathBuf {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["passwd", name])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mta passwd");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with(&format!("{name}:$argon2id$")), "{line}");
    let path = dir.join("users");
    std::fs::write(&path, format!("# test users\n{line}")).unwrap();
    path
}

/// The text `GET /metrics` answers on `admin` (status line and headers included).
pub fn metrics_text(admin: SocketAddr) -> String {
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of the unlabelled series `name` in a metrics text.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// Waits (at most `limit`, looking every 50 ms) until `done` holds; whether it did.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}
