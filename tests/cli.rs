//! The `mta` command line: check-config, the documented config file, and the offline queue
//! reader against a spool written by a real run.

mod common;

use std::process::Command;

use common::{Client, Mta, tempdir, write_config};

fn mta(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(args)
        .output()
        .expect("run mta")
}

#[test]
fn documented_config_file_is_the_defaults() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/mta.toml");
    let out = mta(&["check-config", "--config", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let defaults = mta(&["check-config"]);
    assert!(defaults.status.success());
    assert_eq!(
        out.stdout, defaults.stdout,
        "config/mta.toml must match the built-in defaults"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("max_message_size = \"25MiB\""), "{text}");
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempdir();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[smtp]\nmax_recipients = 0\n").unwrap();
    let out = mta(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("smtp.max_recipients"));
    std::fs::write(&path, "[smtp]\nmax_message_size = \"big\"\n").unwrap();
    let out = mta(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_message_size"));
}

#[test]
fn queue_list_and_count_read_the_spool() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    let mut server = Mta::start(dir.path(), &config);
    let mut c = Client::connect(server.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\nMAIL FROM:<sender@c.test>\r\nRCPT TO:<a@d.test>\r\nRCPT TO:<b@d.test>\r\nDATA\r\n");
    assert_eq!(c.codes(5), [250, 250, 250, 250, 354]);
    c.send(b"Subject: q\r\n\r\nx\r\n.\r\nQUIT\r\n");
    let queued = c.reply().unwrap();
    let id = queued.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(server.stop().success());
    let cfg = config.to_str().unwrap();
    let list = mta(&["queue", "list", "--config", cfg]);
    assert!(list.status.success());
    let text = String::from_utf8(list.stdout).unwrap();
    assert!(
        text.contains(&id) && text.contains("sender@c.test") && text.contains("a@d.test, b@d.test"),
        "{text}"
    );
    let count = mta(&["queue", "count", "--config", cfg]);
    let text = String::from_utf8(count.stdout).unwrap();
    assert!(
        text.contains("accepted  2") && text.contains("queued    2"),
        "{text}"
    );
}

#[test]
fn relative_spool_path_works() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("rel.toml"),
        "shards = 1\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[spool]\npath = \"./spool\"\n\
         min_free_space = 0\nmin_free_percent = 0.0\n[delivery]\nhold = true\n[log]\ndir = \"./log\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mta"))
        .current_dir(dir.path())
        .args(["run", "--config", "rel.toml"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let ready = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(20)) {
            Ok(l) if l.contains(" ready") => break true,
            Ok(l) => seen.push(l),
            Err(_) => break false,
        }
    };
    // SAFETY: kill(2) on the PID of the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(ready, "{seen:?}");
    assert!(status.success(), "{status}");
    assert!(dir.path().join("spool/shard-0").is_dir());
}

#[test]
fn check_config_reads_every_file_a_run_would_and_exits_2() {
    let dir = tempdir();
    let missing = dir.path().join("missing");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let shaping = dir.path().join("shaping.toml");
    std::fs::write(&shaping, "[default]\nnonsense = 1\n").unwrap();
    for (what, extra) in [
        (
            "users file",
            format!("[auth]\nusers_file = \"{}\"\n", missing.display()),
        ),
        (
            "certificate",
            format!(
                "[[tls.certificates]]\ncert_file = \"{g}\"\nkey_file = \"{g}\"\n",
                g = garbage.display()
            ),
        ),
        (
            "trust roots",
            format!("[tls]\nca_file = \"{}\"\n", missing.display()),
        ),
        (
            "shaping file",
            format!("[delivery]\nshaping_file = \"{}\"\n", shaping.display()),
        ),
    ] {
        let config = dir.path().join("mta.toml");
        std::fs::write(&config, &extra).unwrap();
        let out = mta(&["check-config", "--config", config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("configuration error"),
            "{what}: {out:?}"
        );
    }
}

#[test]
fn queue_commands_on_a_host_without_a_spool_say_it_is_empty() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    for cmd in ["count", "list"] {
        let out = mta(&["queue", cmd, "--config", config.to_str().unwrap()]);
        assert!(out.status.success(), "{cmd}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches("no spool at").count(), 1, "{cmd}: {err}");
        assert!(err.contains("the queue is empty"), "{cmd}: {err}");
    }
    let out = mta(&["queue", "count", "--config", config.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued    0"));
    // A spool path that is not a directory: one error, said once.
    std::fs::write(dir.path().join("spool"), "a file").unwrap();
    let out = mta(&["queue", "count", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}
