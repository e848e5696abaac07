//! A private `redis-server` for cluster tests: on a free loopback port, in a temporary
//! directory, with no persistence; stopped by PID when dropped. `.ci/run` installs the
//! package where it is missing; where it cannot be had, [`Redis::start`] says so and the
//! test skips.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
}

/// Installs the package once per test binary where it is missing (as root, with apt-get),
/// through the same script `.ci/run` uses.
fn install_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/install-test-deps.sh");
        let _ = Command::new("bash").arg(script).status();
    });
}

fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

impl Redis {
    /// A running Redis, or None (with a message) when `redis-server` is not installed.
    pub fn start(dir: &Path) -> Option<Redis> {
        if find().is_none() {
            install_once();
        }
        let Some(bin) = find() else {
            eprintln!(
                "SKIP: redis-server is not installed (apt-get install -y redis-server; \
                 .ci/run installs it)"
            );
            return None;
        };
        std::fs::create_dir_all(dir).expect("redis dir");
        let port = super::closed_port();
        let mut r = Redis {
            child: None,
            port,
            bin,
            dir: dir.to_owned(),
        };
        r.restart();
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.command("PING").is_some_and(|r| r.starts_with("+PONG")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// Kills the server (SIGKILL, by PID) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends one inline command and returns the raw reply.
    pub fn command(&self, cmd: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        // Bulk replies may come in several reads; stop at a short pause.
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
                }
                Err(_) => break,
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// Calls of commands whose name starts with `prefix` (`INFO commandstats`).
    pub fn calls(&self) -> u64 {
        let info = self.command("INFO commandstats").unwrap_or_default();
        info.lines()
            .filter_map(|l| l.split_once("calls="))
            .filter(|(name, _)| !name.contains("cmdstat_info"))
            .filter_map(|(_, rest)| rest.split(',').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
