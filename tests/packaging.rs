//! The packaged configuration and the systemd unit, as the pair the Debian package installs:
//! `packaging/mta.toml` (/etc/mta/mta.toml) passes `mta check-config`, has its spool in the
//! unit's state directory (/var/lib/mta/spool) and its event log in the unit's logs directory
//! (/var/log/mta), listens on loopback only and names the shaping file the package installs;
//! `config/mta.service` runs /usr/bin/mta with that file and, under `ProtectSystem=strict`,
//! makes those directories writable through `StateDirectory=` and `LogsDirectory=` (mode
//! 0750), with no `ReadWritePaths=`.
//!
//! Not here: building, installing and starting the package, which needs root and dpkg
//! (`packaging/test-deb.sh`, run by `.ci/run`).

use std::path::Path;
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
        effective.contains("path = \"/var/lib/mta/spool\""),
        "{effective}"
    );
    assert!(effective.contains("dir = \"/var/log/mta\""), "{effective}");
}

#[test]
fn packaged_config_and_unit_agree() {
    let config = Config::load(&Path::new(ROOT).join("packaging/mta.toml")).unwrap();
    assert_eq!(config.spool.path, Path::new("/var/lib/mta/spool"));
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

    assert!(!one("LimitMEMLOCK").is_empty());

    // Under ProtectSystem=strict only the StateDirectory= (under /var/lib) and the
    // LogsDirectory= (under /var/log) are writable, which systemd creates and gives to User=
    // at every start: the spool must be in the first, the event log in the second, with no
    // ReadWritePaths= to keep in step with the configuration.
    assert!(unit_values(&unit, "ReadWritePaths").is_empty());
    let state = Path::new("/var/lib").join(one("StateDirectory"));
    let logs = Path::new("/var/log").join(one("LogsDirectory"));
    assert_eq!(state, Path::new("/var/lib/mta"));
    assert_eq!(logs, Path::new("/var/log/mta"));
    assert_eq!(one("StateDirectoryMode"), "0750");
    assert_eq!(one("LogsDirectoryMode"), "0750");
    assert!(
        config.spool.path.starts_with(&state) && config.spool.path != state,
        "{} is not inside {}",
        config.spool.path.display(),
        state.display()
    );
    assert!(
        config.log.dir.starts_with(&logs),
        "{} is not inside {}",
        config.log.dir.display(),
        logs.display()
    );
}
