//! The packaged configuration and the systemd unit, as the pair the Debian package installs:
//! `packaging/mta.toml` (/etc/mta/mta.toml) passes `mta check-config`, has absolute spool and
//! log paths, listens on loopback only and names the shaping file the package installs;
//! `config/mta.service` runs /usr/bin/mta with that file and makes exactly those paths
//! writable under `ProtectSystem=strict`.
//!
//! Not here: building, installing and starting the package, which needs root and dpkg
//! (`packaging/test-deb.sh`, run by `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;

use mta::config::Config;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(relative)).expect(relative)
}

/// Every value of `key=` in the unit, in order (comments and other keys skipped).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn packaged_config_passes_check_config() {
    let text = read("packaging/mta.toml");
    // The package installs config/shaping.toml as /etc/mta/shaping.toml.
    assert!(text.contains("shaping_file = \"/etc/mta/shaping.toml\""));
    let shaping = Path::new(ROOT).join("config/shaping.toml");
    let local = text.replace("/etc/mta/shaping.toml", shaping.to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mta.toml");
    std::fs::write(&path, local).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Warnings only (relay.postmaster is left for the operator to set).
    for line in stderr.lines() {
        assert!(line.starts_with("mta: warning: "), "{stderr}");
    }
    let effective = String::from_utf8(out.stdout).unwrap();
    assert!(
        effective.contains("path = \"/var/spool/mta\""),
        "{effective}"
    );
    assert!(effective.contains("dir = \"/var/log/mta\""), "{effective}");
}

#[test]
fn packaged_config_and_unit_agree() {
    let config = Config::load(&Path::new(ROOT).join("packaging/mta.toml")).unwrap();
    assert_eq!(config.spool.path, Path::new("/var/spool/mta"));
    assert_eq!(config.log.dir, Path::new("/var/log/mta"));
    assert_eq!(
        config.delivery.shaping_file.as_deref(),
        Some(Path::new("/etc/mta/shaping.toml"))
    );
    assert!(!config.listeners.is_empty());
    for l in &config.listeners {
        assert!(
            l.address.ip().is_loopback(),
            "{} is not loopback",
            l.address
        );
    }
    let admin: std::net::SocketAddr = config.admin.listen.parse().unwrap();
    assert!(admin.ip().is_loopback());

    let unit = read("config/mta.service");
    let one = |key: &str| {
        let v = unit_values(&unit, key);
        assert_eq!(v.len(), 1, "{key}= {v:?}");
        v.into_iter().next().unwrap()
    };
    assert_eq!(
        one("ExecStart"),
        "/usr/bin/mta run --config /etc/mta/mta.toml"
    );
    assert!(one("ExecStartPre").contains("/usr/bin/mta check-config --config /etc/mta/mta.toml"));
    let reload = unit_values(&unit, "ExecReload");
    assert_eq!(reload.last().unwrap(), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("User"), "mta");
    assert_eq!(one("Group"), "mta");
    assert_eq!(one("ProtectSystem"), "strict");
    assert!(unit_values(&unit, "WorkingDirectory").is_empty());

    // Under ProtectSystem=strict only ReadWritePaths= and the LogsDirectory= (under /var/log)
    // are writable: the spool and the event log must be in them.
    let mut writable: Vec<PathBuf> = one("ReadWritePaths")
        .split_whitespace()
        .map(PathBuf::from)
        .collect();
    writable.extend(
        one("LogsDirectory")
            .split_whitespace()
            .map(|d| Path::new("/var/log").join(d)),
    );
    for needed in [&config.spool.path, &config.log.dir] {
        assert!(
            writable.iter().any(|w| needed.starts_with(w)),
            "{} is not writable under the unit ({writable:?})",
            needed.display()
        );
    }
}
