//! Outbound AUTH through real sockets: an `mta` relays through scripted smarthosts on loopback
//! (STARTTLS with a certificate made here, AUTH PLAIN/LOGIN checked against one account):
//! success with a pooled connection that stays authenticated, a wrong password (deferred,
//! nothing sent, the reason recorded, then fixed by SIGHUP), a smarthost without STARTTLS
//! (the credentials never leave), a LOGIN-only smarthost, and `check-config` on the files.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::certs::make_certs;
use common::smarthost::{Offer, Smarthost};
use common::{Client, Mta, event_log, mta_cli_json, queue_counts, submit, tempdir, write_config};

const USER: &str = "relay-user";
/// With a colon and a space: the password is everything after the first colon.
const PASSWORD: &str = "Pa55:w0rd x";

fn offer(starttls: bool, mechanisms: &'static str) -> Offer {
    Offer {
        starttls,
        mechanisms,
        user: USER,
        password: PASSWORD,
    }
}

/// A credentials file readable by its owner only.
fn credentials(dir: &Path, name: &str, line: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("# smarthost account\n{line}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A certificate (and its key) for the smarthosts.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    make_certs(dir, &[&["smarthost.test", "127.0.0.1"]]).leaves[0].clone()
}

/// Waits (bounded) until the event log has `n` events matching `pred`, and returns them.
fn wait_events(
    dir: &Path,
    n: usize,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<_> = event_log(dir).into_iter().filter(|v| pred(v)).collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{n} events wanted: {:?}",
            event_log(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) until `n` log lines contain every one of `parts`.
fn wait_log(mta: &mut Mta, n: usize, parts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = mta
            .drain_log()
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count();
        if seen >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{parts:?}: {:?}", mta.log_lines);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Nothing the MTA wrote (event log, standard error) holds the password.
fn password_nowhere(mta: &mut Mta, dir: &Path) {
    let log = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    let stderr = mta.drain_log().join("\n");
    for text in [&log, &stderr] {
        assert!(
            !text.contains(PASSWORD) && !text.contains("wrong-password"),
            "{text}"
        );
    }
}

/// Two messages to `rcpt` in one SMTP session (so both are queued on the same shard).
fn submit_two(mta: &Mta, rcpt: &str) {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    for i in 0..2 {
        c.send(format!("MAIL FROM:<a@src.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes());
        assert_eq!(c.codes(3), [250, 250, 354]);
        c.send(format!("Subject: {i}\r\n\r\nhello\r\n.\r\n").as_bytes());
        let r = c.reply().unwrap();
        assert!(r.starts_with("250"), "{r}");
    }
    c.send(b"QUIT\r\n");
}

#[test]
fn the_smarthost_gets_auth_plain_inside_tls_once_per_connection() {
    let dir = tempdir();
    let (cert, key) = certificate(dir.path());
    let smarthost = Smarthost::start(offer(true, "PLAIN LOGIN"), &cert, &key);
    let auth = credentials(dir.path(), "relay.auth", &format!("{USER}:{PASSWORD}"));
    // delivery.tls = "none": a destination with credentials still gets TLS.
    let extra = format!(
        "[delivery]\nrelay_host = \"127.0.0.1:{}\"\nrelay_auth_file = \"{}\"\ntls = \"none\"\n\
         idle_timeout = \"1s\"\nmax_connections = 1\n[delivery.retry]\nfirst = \"1h\"\n",
        smarthost.port,
        auth.display()
    );
    let config = write_config(dir.path(), "", &extra);
    let mut mta = Mta::start(dir.path(), &config);

    submit_two(&mta, "u@far.test");
    assert_eq!(smarthost.wait_for(2, Duration::from_secs(30)).len(), 2);
    let delivered = wait_events(dir.path(), 2, |v| v["type"] == "Delivery");
    for v in &delivered {
        assert_eq!(v["auth"], USER, "{v}");
        assert!(v["tls"].as_str().unwrap().starts_with("TLSv1."), "{v}");
        assert_eq!(
            v["destination"],
            format!("relay:127.0.0.1:{}", smarthost.port)
        );
    }
    // Both messages went over one connection, which authenticated once, with PLAIN, in TLS.
    assert_eq!(smarthost.connections.load(Ordering::SeqCst), 1);
    let auths = smarthost.auths();
    assert_eq!(auths.len(), 1, "{auths:?}");
    let a = &auths[0];
    assert!(
        a.ok && a.tls && a.mechanism == "PLAIN" && a.user == USER,
        "{a:?}"
    );
    let plaintext: Vec<String> = smarthost
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(tls, _)| !tls)
        .map(|(_, l)| l.clone())
        .collect();
    assert_eq!(plaintext, ["EHLO mx.test", "STARTTLS"]);

    // Once that connection has idled out, a new one authenticates again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while smarthost.closed.load(Ordering::SeqCst) < 1 {
        assert!(
            Instant::now() < deadline,
            "the idle connection was not closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    submit(&mta, &["v@far.test"], "third");
    assert_eq!(smarthost.wait_for(3, Duration::from_secs(30)).len(), 3);
    let auths = smarthost.auths();
    assert_eq!(auths.len(), 2, "{auths:?}");
    assert!(auths[1].ok && auths[1].connection == 2, "{auths:?}");

    password_nowhere(&mut mta, dir.path());
    assert!(mta.stop().success());
}

#[test]
fn a_wrong_password_defers_sends_nothing_and_a_reload_fixes_it() {
    let dir = tempdir();
    let (cert, key) = certificate(dir.path());
    let smarthost = Smarthost::start(offer(true, "PLAIN LOGIN"), &cert, &key);
    let auth = credentials(dir.path(), "route.auth", &format!("{USER}:wrong-password"));
    let extra = format!(
        "[delivery]\n[delivery.retry]\nfirst = \"1h\"\n[[routes]]\ndomain = \"wrong.test\"\n\
         hosts = [\"127.0.0.1:{}\"]\nauth_file = \"{}\"\n",
        smarthost.port,
        auth.display()
    );
    let config = write_config(dir.path(), "", &extra);
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");

    submit(&mta, &["u@wrong.test"], "wrong");
    let v = &wait_events(dir.path(), 1, |v| v["type"] == "TransientFailure")[0];
    assert_eq!(v["status"], "4.7.8", "{v}");
    let reply = v["reply"].as_str().unwrap();
    assert!(
        reply.contains("AUTH PLAIN as relay-user refused: 535 5.7.8"),
        "{reply}"
    );
    assert!(smarthost.got.lock().unwrap().is_empty());
    assert!(!smarthost.saw("MAIL"), "no transaction after a failed AUTH");
    let auths = smarthost.auths();
    assert!(
        auths.len() == 1 && !auths[0].ok && auths[0].tls,
        "{auths:?}"
    );
    // The operator sees who was refused and why (on the shard that has the mail).
    let all = mta_cli_json(admin, &config, &["dest", "show", "wrong.test"]);
    let shards = all["shards"].as_array().unwrap();
    let d = shards
        .iter()
        .find(|d| d["known"] == true)
        .expect("a shard knows it");
    assert_eq!(d["auth"], USER, "{d}");
    assert!(
        d["last_error"].as_str().unwrap().contains("535 5.7.8"),
        "{d}"
    );

    // A malformed file on SIGHUP: the reload fails naming the key; the old credentials stay.
    std::fs::write(&auth, "no colon here\n").unwrap();
    mta.signal(libc::SIGHUP);
    wait_log(
        &mut mta,
        2,
        &["configuration reload failed", "routes[0].auth_file"],
    );
    mta_cli_json(admin, &config, &["queue", "flush"]);
    let failures = wait_events(dir.path(), 2, |v| v["type"] == "TransientFailure");
    assert_eq!(failures[1]["status"], "4.7.8", "{:?}", failures[1]);
    assert_eq!(smarthost.auths().len(), 2);

    // The right password and SIGHUP: the next attempt delivers.
    std::fs::write(&auth, format!("{USER}:{PASSWORD}\n")).unwrap();
    mta.signal(libc::SIGHUP);
    wait_log(&mut mta, 2, &["configuration reloaded"]);
    mta_cli_json(admin, &config, &["queue", "flush"]);
    let v = &wait_events(dir.path(), 1, |v| v["type"] == "Delivery")[0];
    assert_eq!(v["auth"], USER, "{v}");
    assert_eq!(smarthost.wait_for(1, Duration::from_secs(10)).len(), 1);
    assert!(event_log(dir.path()).iter().all(|v| v["type"] != "Bounce"));

    password_nowhere(&mut mta, dir.path());
    assert!(mta.stop().success());
    let counts = queue_counts(&config);
    assert_eq!(
        (counts["delivered"], counts["bounced"]),
        (1, 0),
        "{counts:?}"
    );
}

#[test]
fn no_starttls_means_no_credentials_and_login_only_works() {
    let dir = tempdir();
    let (cert, key) = certificate(dir.path());
    let plain = Smarthost::start(offer(false, "PLAIN LOGIN"), &cert, &key);
    let login = Smarthost::start(offer(true, "LOGIN"), &cert, &key);
    let auth = credentials(dir.path(), "relay.auth", &format!("{USER}:{PASSWORD}"));
    let route = |domain: &str, port: u16, tls: &str| {
        format!(
            "[[routes]]\ndomain = \"{domain}\"\nhosts = [\"127.0.0.1:{port}\"]\ntls = \"{tls}\"\n\
             auth_file = \"{}\"\n",
            auth.display()
        )
    };
    let extra = format!(
        "[delivery]\n[delivery.retry]\nfirst = \"1h\"\n{}{}",
        route("plain.test", plain.port, "opportunistic"),
        route("login.test", login.port, "none"),
    );
    let config = write_config(dir.path(), "", &extra);
    let mut mta = Mta::start(dir.path(), &config);
    submit(&mta, &["u@plain.test", "u@login.test"], "two");

    // The smarthost without STARTTLS offered AUTH in plaintext: it was never used.
    let v = &wait_events(dir.path(), 1, |v| v["recipient"] == "u@plain.test")[0];
    assert_eq!(v["type"], "TransientFailure", "{v}");
    assert_eq!(v["status"], "4.7.10", "{v}");
    let reply = v["reply"].as_str().unwrap();
    assert!(
        reply.contains("credentials for relay-user not sent")
            && reply.contains("STARTTLS not offered"),
        "{reply}"
    );
    assert!(plain.auths().is_empty());
    assert!(!plain.saw("AUTH") && !plain.saw("MAIL"));
    let wire = String::from_utf8_lossy(&plain.plaintext.lock().unwrap()).into_owned();
    for secret in [
        PASSWORD.to_owned(),
        STANDARD.encode(PASSWORD),
        STANDARD.encode(format!("\0{USER}\0{PASSWORD}")),
        STANDARD.encode(USER),
    ] {
        assert!(!wire.contains(&secret), "{secret} went out: {wire}");
    }

    // LOGIN when PLAIN is not offered, inside TLS although the route says "none".
    let v = &wait_events(dir.path(), 1, |v| v["recipient"] == "u@login.test")[0];
    assert_eq!(v["type"], "Delivery", "{v}");
    assert_eq!(v["auth"], USER, "{v}");
    assert!(v["tls"].as_str().unwrap().starts_with("TLSv1."), "{v}");
    assert_eq!(login.wait_for(1, Duration::from_secs(10)).len(), 1);

    password_nowhere(&mut mta, dir.path());
    assert!(mta.stop().success());
    // Every connection the scheduler opened authenticated once, with LOGIN, inside TLS.
    let auths = login.auths();
    let mut on: Vec<usize> = auths.iter().map(|a| a.connection).collect();
    on.sort();
    let opened = login.connections.load(Ordering::SeqCst);
    assert_eq!(on, (1..=opened).collect::<Vec<_>>(), "{auths:?}");
    assert!(
        auths
            .iter()
            .all(|a| a.ok && a.tls && a.mechanism == "LOGIN"),
        "{auths:?}"
    );
    assert!(!plain.saw("AUTH"));
}

#[test]
fn check_config_and_run_read_the_credential_files() {
    let dir = tempdir();
    let check = |extra: &str| {
        let config = dir.path().join("mta.toml");
        std::fs::write(&config, extra).unwrap();
        Command::new(env!("CARGO_BIN_EXE_mta"))
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .expect("mta check-config")
    };
    let relay = |file: &Path| {
        format!(
            "[delivery]\nrelay_host = \"smarthost.example.net:587\"\nrelay_auth_file = \"{}\"\n",
            file.display()
        )
    };
    let route = |file: &Path| {
        format!(
            "[[routes]]\ndomain = \"a.test\"\nhosts = [\"127.0.0.1:2526\"]\nauth_file = \"{}\"\n",
            file.display()
        )
    };

    let missing = dir.path().join("missing.auth");
    let out = check(&relay(&missing));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        err.contains("`delivery.relay_auth_file`") && err.contains("missing.auth"),
        "{err}"
    );

    let bad = credentials(dir.path(), "bad.auth", "relay-user hunter2");
    let out = check(&route(&bad));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        err.contains("`routes[0].auth_file`") && !err.contains("hunter2"),
        "{err}"
    );

    let open = credentials(dir.path(), "open.auth", &format!("{USER}:{PASSWORD}"));
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(&route(&open));
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        err.contains("warning: routes[0].auth_file: ") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(
        stdout.contains("auth_file = ") && !stdout.contains(PASSWORD),
        "{stdout}"
    );

    // `mta run` refuses to start on a file it cannot read, like check-config.
    let config = dir.path().join("run.toml");
    std::fs::write(&config, relay(&missing)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("mta run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("delivery.relay_auth_file"));
}
