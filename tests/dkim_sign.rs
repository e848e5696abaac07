//! DKIM signing at acceptance, end to end: the `mta` binary with a `[dkim]` section accepts
//! mail over real sockets, and the spooled body is checked by an independent verifier
//! (Python dkimpy, as in `dkim_verify.rs`). Also: mail relayed in from an untrusted client is
//! not signed, a bulk message without one-click unsubscription is logged, and a bad key file
//! stops `check-config` and `run` with an error naming the file.

mod common;

use common::{Client, Mta, tempdir, write_config};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/dkim_verify.py");

/// dkimpy and PyNaCl, installed once into the target directory (shared with `dkim_verify.rs`).
fn pydeps() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = base.join("pydeps");
        let importable = || {
            Command::new("python3")
                .env("PYTHONPATH", &dir)
                .args(["-c", "import dkim, nacl"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if importable() {
            return dir;
        }
        std::fs::create_dir_all(&base).expect("target tmp dir");
        let lock = std::fs::File::create(base.join("pydeps.lock")).expect("lock file");
        lock.lock().expect("lock");
        if !importable() {
            let status = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet"])
                .args(["--disable-pip-version-check", "--target"])
                .arg(&dir)
                .args(["dkimpy", "pynacl"])
                .status()
                .expect("pip runs");
            assert!(status.success(), "pip install dkimpy pynacl failed");
            assert!(importable(), "dkimpy still not importable");
        }
        dir
    })
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes an RSA-2048 (selector `rsa`) and an Ed25519 key (selector `ed`) for `example.com`
/// into `dir`, with their DNS records in `dir/records`, and returns the `[dkim]` section.
fn keys(dir: &Path) -> String {
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
    let pem = rsa_key.to_pkcs1_pem(LineEnding::LF).expect("PKCS#1");
    std::fs::write(dir.join("rsa.pem"), pem.as_bytes()).expect("write");
    let spki = rsa_key.to_public_key().to_public_key_der().expect("SPKI");
    let mut records = format!(
        "rsa._domainkey.example.com v=DKIM1; k=rsa; p={}\n",
        base64(spki.as_bytes())
    );
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("Ed25519");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parses");
    let b64 = base64(pkcs8.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ASCII"))
        .collect();
    std::fs::write(
        dir.join("ed.pem"),
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        ),
    )
    .expect("write");
    records += &format!(
        "ed._domainkey.example.com v=DKIM1; k=ed25519; p={}\n",
        base64(pair.public_key().as_ref())
    );
    std::fs::write(dir.join("records"), records).expect("write");
    format!(
        "[dkim]\nenabled = true\nbulk_warning_recipients = 2\n\
         [[dkim.keys]]\ndomain = \"example.com\"\nselector = \"rsa\"\nkey_file = \"{}\"\n\
         [[dkim.keys]]\ndomain = \"example.com\"\nselector = \"ed\"\n\
         algorithm = \"ed25519-sha256\"\nkey_file = \"{}\"\n",
        dir.join("rsa.pem").display(),
        dir.join("ed.pem").display()
    )
}

/// dkimpy's verdict for each signature of `message`, top to bottom.
fn verify(dir: &Path, message: &[u8]) -> Vec<String> {
    let path = dir.join("message.eml");
    std::fs::write(&path, message).expect("write");
    let output = Command::new("python3")
        .env("PYTHONPATH", pydeps())
        .arg(SCRIPT)
        .arg(dir.join("records"))
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "verifier failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Sends one message over a fresh connection and expects `250` for it.
fn submit(mta: &Mta, from: &str, rcpts: &[&str], message: &str) {
    let mut c = Client::connect(mta.addr);
    assert_eq!(c.codes(1), [220]);
    c.send(b"EHLO client.test\r\n");
    assert_eq!(
        c.reply().map(|r| r[..3].to_string()).as_deref(),
        Some("250")
    );
    c.send(format!("MAIL FROM:<{from}>\r\n").as_bytes());
    assert_eq!(c.codes(1), [250]);
    for r in rcpts {
        c.send(format!("RCPT TO:<{r}>\r\n").as_bytes());
        assert_eq!(c.codes(1), [250], "RCPT {r}");
    }
    c.send(b"DATA\r\n");
    assert_eq!(c.codes(1), [354]);
    c.send(message.as_bytes());
    c.send(b".\r\nQUIT\r\n");
    assert_eq!(c.codes(2), [250, 221]);
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: \"News\" <{from}>\r\nTo: reader@example.net\r\nSubject: {subject}\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.com>\r\n\r\n\
         Hello,\r\n\r\nthis is {subject}.\r\n"
    )
}

/// The spooled bodies, in acceptance order.
fn spooled(dir: &Path) -> Vec<(Vec<u8>, String)> {
    let queue = mta::spool::read_offline(&dir.join("spool")).expect("spool");
    let mut messages: Vec<_> = queue.messages.into_iter().map(|m| m.message).collect();
    messages.sort_by_key(|m| m.arrival_unix_ms);
    messages
        .into_iter()
        .map(|m| {
            let text = String::from_utf8_lossy(&m.body).into_owned();
            (m.body, text)
        })
        .collect()
}

fn find<'a>(messages: &'a [(Vec<u8>, String)], subject: &str) -> &'a (Vec<u8>, String) {
    messages
        .iter()
        .find(|(_, t)| t.contains(&format!("Subject: {subject}\r\n")))
        .unwrap_or_else(|| panic!("{subject} not spooled"))
}

#[test]
fn submitted_mail_is_signed_before_spooling() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", &keys(dir.path()));
    let mut mta = Mta::start(dir.path(), &config);
    submit(
        &mta,
        "news@example.com",
        &["a@example.net"],
        &message("news@example.com", "one"),
    );
    submit(
        &mta,
        "x@sub.example.com",
        &["a@example.net", "b@example.net", "c@example.net"],
        &message("x@sub.example.com", "bulk"),
    );
    submit(
        &mta,
        "x@other.test",
        &["a@example.net"],
        &message("x@other.test", "nokey"),
    );
    let admin = mta.admin.expect("admin endpoint");
    let (_, metrics) =
        mta::admin::client::get(&format!("http://{admin}"), "/metrics", None).expect("metrics");
    let total = |name: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
            .sum()
    };
    assert_eq!(total("mta_dkim_signed_total"), 2, "{metrics}");
    assert_eq!(total("mta_dkim_no_key_total"), 1, "{metrics}");
    assert!(mta.stop().success());
    let mut log = String::new();
    for _ in 0..50 {
        log = mta.drain_log().join("\n");
        if log.contains("no DKIM key") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        log.contains("bulk message without List-Unsubscribe"),
        "{log}"
    );
    assert!(log.contains("no DKIM key for the From domain"), "{log}");

    let messages = spooled(dir.path());
    assert_eq!(messages.len(), 3);
    let (body, text) = find(&messages, "one");
    // The signatures come first, then our Received field, then the client's message.
    assert!(text.starts_with("DKIM-Signature: "), "{text}");
    let received = text.find("\r\nReceived: ").expect("Received field");
    assert!(received > text.rfind("DKIM-Signature: ").unwrap());
    assert_eq!(verify(dir.path(), body), ["pass", "pass"]);
    assert!(text.contains("a=rsa-sha256") && text.contains("a=ed25519-sha256"));

    let tampered = text.replace("this is one.", "this is 0ne.");
    assert_eq!(verify(dir.path(), tampered.as_bytes()), ["fail", "fail"]);
    let added = text.replacen("Subject: one", "Subject: one\r\nSubject: two", 1);
    assert_eq!(verify(dir.path(), added.as_bytes()), ["fail", "fail"]);

    // A subdomain of example.com is signed with example.com's keys.
    let (body, _) = find(&messages, "bulk");
    assert_eq!(verify(dir.path(), body), ["pass", "pass"]);
    let (_, text) = find(&messages, "nokey");
    assert!(!text.contains("DKIM-Signature"), "{text}");
}

/// A configuration where 127.0.0.1 is not trusted and `local.test` is ours.
fn inbound_config(dir: &Path, sign: &str) -> PathBuf {
    let section = keys(dir).replace(
        "[dkim]\nenabled = true\n",
        &format!("[dkim]\nenabled = true\nsign = \"{sign}\"\n"),
    );
    let extra = format!(
        "[relay]\nlocal_domains = [\"local.test\"]\ntrusted_networks = []\n\
         [[routes]]\ndomain = \"local.test\"\nhosts = [\"127.0.0.1:9\"]\n{section}"
    );
    write_config(dir, "", &extra)
}

#[test]
fn mail_relayed_in_from_the_internet_is_not_signed() {
    for (sign, signed) in [("submitted", false), ("all", true)] {
        let dir = tempdir();
        let config = inbound_config(dir.path(), sign);
        let mut mta = Mta::start(dir.path(), &config);
        submit(
            &mta,
            "news@example.com",
            &["user@local.test"],
            &message("news@example.com", "inbound"),
        );
        assert!(mta.stop().success());
        let messages = spooled(dir.path());
        let (body, text) = find(&messages, "inbound");
        if signed {
            assert_eq!(verify(dir.path(), body), ["pass", "pass"]);
        } else {
            assert!(text.starts_with("Received: "), "{text}");
            assert!(!text.contains("DKIM-Signature"), "{text}");
        }
    }
}

#[test]
fn a_bad_key_file_stops_check_config_and_run() {
    let dir = tempdir();
    let section = keys(dir.path());
    let missing = dir.path().join("missing.pem");
    let extra = section.replace(
        &dir.path().join("ed.pem").display().to_string(),
        &missing.display().to_string(),
    );
    let config = write_config(dir.path(), "", &extra);
    for cmd in ["check-config", "run"] {
        let output = Command::new(env!("CARGO_BIN_EXE_mta"))
            .args([cmd, "--config"])
            .arg(&config)
            .output()
            .expect("mta runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{cmd}: {stderr}");
        assert!(
            stderr.contains(&missing.display().to_string()),
            "{cmd}: {stderr}"
        );
    }
    // A file that is not a key is named too.
    std::fs::write(&missing, "not a key\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .expect("mta runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    // Enabled without keys is a configuration error.
    let config = write_config(dir.path(), "", "[dkim]\nenabled = true\n");
    let output = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .expect("mta runs");
    assert!(String::from_utf8_lossy(&output.stderr).contains("dkim.keys"));
}
