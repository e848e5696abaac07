//! Tests of key loading, domain selection and the produced signature fields.

use super::*;
use crate::dkim::config::DkimKeyConfig;
use base64::Engine as _;
use ring::signature::KeyPair as _;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use std::path::PathBuf;
use std::sync::OnceLock;

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// PKCS#1 and PKCS#8 PEM of one RSA-2048 key, generated once per test run.
fn rsa_pems() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
        let pkcs1 = key
            .to_pkcs1_pem(LineEnding::LF)
            .expect("PKCS#1")
            .to_string();
        let pkcs8 = key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8")
            .to_string();
        (pkcs1, pkcs8)
    })
}

fn ed25519_pem() -> String {
    // Made by another library than the one that signs.
    use ring::signature::Ed25519KeyPair;
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("Ed25519 key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parses");
    assert_eq!(pair.public_key().as_ref().len(), 32);
    pem("PRIVATE KEY", pkcs8.as_ref())
}

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        Keys {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write key");
        path
    }

    fn entry(&self, domain: &str, selector: &str, algorithm: Algorithm) -> DkimKeyConfig {
        let key_file = match algorithm {
            Algorithm::RsaSha256 => self.write(&format!("{selector}.rsa.pem"), &rsa_pems().0),
            Algorithm::Ed25519Sha256 => self.write(&format!("{selector}.ed.pem"), &ed25519_pem()),
        };
        DkimKeyConfig {
            domain: domain.into(),
            selector: selector.into(),
            algorithm,
            key_file,
        }
    }
}

fn section(keys: Vec<DkimKeyConfig>) -> DkimSection {
    DkimSection {
        enabled: true,
        keys,
        ..DkimSection::default()
    }
}

/// The tags of each DKIM-Signature field in `out`, unfolded.
fn parse(out: &[u8]) -> Vec<HashMap<String, String>> {
    let text = std::str::from_utf8(out).expect("ASCII");
    assert!(text.ends_with("\r\n"));
    text.split("DKIM-Signature: ")
        .filter(|f| !f.is_empty())
        .map(|field| {
            assert!(field.ends_with(";\r\n"), "field ends in CRLF: {field:?}");
            for line in field.trim_end().split("\r\n").skip(1) {
                assert!(line.starts_with('\t'), "continuation is folded: {line:?}");
            }
            field
                .replace("\r\n", "")
                .split(';')
                .filter_map(|tag| tag.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.split_whitespace().collect()))
                .collect()
        })
        .collect()
}

const MESSAGE: &str = "From: Alice <alice@Example.com>\r\n\
    To: bob@example.net\r\n\
    Subject: hello\r\n\
    Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\
    List-Unsubscribe: <https://example.com/u>\r\n\
    X-Other: not signed\r\n\
    \r\n\
    Body line\r\n";

#[test]
fn missing_key_file_names_the_file() {
    let mut entry = Keys::new().entry("example.com", "s", Algorithm::Ed25519Sha256);
    entry.key_file = PathBuf::from("/nonexistent/dkim-key.pem");
    let err = Signer::from_config(&section(vec![entry])).expect_err("missing file");
    assert!(matches!(err, DkimError::KeyRead { .. }));
    assert!(
        err.to_string().contains("/nonexistent/dkim-key.pem"),
        "{err}"
    );
}

#[test]
fn unparsable_keys_name_the_file() {
    let keys = Keys::new();
    let mut entry = keys.entry("example.com", "s", Algorithm::RsaSha256);
    entry.key_file = keys.write("garbage.pem", "not a key\n");
    let err = Signer::from_config(&section(vec![entry.clone()])).expect_err("no PEM");
    assert!(matches!(err, DkimError::KeyParse { .. }));
    assert!(err.to_string().contains("garbage.pem"), "{err}");

    // An Ed25519 key configured as RSA, and the other way round.
    entry.key_file = keys.write("ed.pem", &ed25519_pem());
    let err = Signer::from_config(&section(vec![entry.clone()])).expect_err("wrong kind");
    assert!(err.to_string().contains("ed.pem"), "{err}");
    entry.algorithm = Algorithm::Ed25519Sha256;
    entry.key_file = keys.write("rsa8.pem", &rsa_pems().1);
    let err = Signer::from_config(&section(vec![entry])).expect_err("wrong kind");
    assert!(err.to_string().contains("rsa8.pem"), "{err}");
}

#[test]
fn loads_rsa_pkcs1_and_pkcs8() {
    let keys = Keys::new();
    let mut pkcs8 = keys.entry("example.com", "s8", Algorithm::RsaSha256);
    pkcs8.key_file = keys.write("pkcs8.pem", &rsa_pems().1);
    let pkcs1 = keys.entry("example.com", "s1", Algorithm::RsaSha256);
    let signer = Signer::from_config(&section(vec![pkcs1, pkcs8])).expect("loads");
    assert_eq!(signer.key_count(), 2);
}

#[test]
fn disabled_or_incomplete_sections() {
    let mut entry = Keys::new().entry("example.com", "s", Algorithm::Ed25519Sha256);
    entry.key_file = PathBuf::from("/nonexistent/key.pem");
    let mut disabled = section(vec![entry.clone()]);
    disabled.enabled = false;
    let signer = Signer::from_config(&disabled).expect("no files read");
    assert_eq!(signer.key_count(), 0);
    assert!(signer.sign(MESSAGE.as_bytes()).expect("signs").is_none());

    entry.selector = " ".into();
    let err = Signer::from_config(&section(vec![entry])).expect_err("empty selector");
    assert!(matches!(err, DkimError::Config(_)));
}

#[test]
fn chooses_exact_then_parent_then_default_domain() {
    let keys = Keys::new();
    let signer = Signer::from_config(&DkimSection {
        default_domain: Some("Fallback.example".into()),
        ..section(vec![
            keys.entry("EXAMPLE.com", "parent", Algorithm::Ed25519Sha256),
            keys.entry("mail.example.com", "exact", Algorithm::Ed25519Sha256),
            keys.entry("fallback.example", "fb", Algorithm::Ed25519Sha256),
        ])
    })
    .expect("loads");
    let selector_for = |from: &str| {
        let message = format!("From: {from}\r\nSubject: x\r\n\r\nbody\r\n");
        signer.sign(message.as_bytes()).expect("signs").map(|out| {
            let tags = &parse(&out)[0];
            (tags["d"].clone(), tags["s"].clone())
        })
    };
    let pair = |d: &str, s: &str| Some((d.to_string(), s.to_string()));
    assert_eq!(
        selector_for("a@MAIL.example.com"),
        pair("mail.example.com", "exact")
    );
    assert_eq!(selector_for("a@example.com"), pair("example.com", "parent"));
    assert_eq!(
        selector_for("a@deep.news.Example.COM"),
        pair("example.com", "parent")
    );
    assert_eq!(selector_for("a@other.org"), pair("fallback.example", "fb"));
    assert_eq!(selector_for("no-domain"), None);

    let no_default = Signer::from_config(&section(vec![keys.entry(
        "example.com",
        "s",
        Algorithm::Ed25519Sha256,
    )]))
    .expect("loads");
    assert!(
        no_default
            .sign(b"From: a@other.org\r\n\r\nbody\r\n")
            .expect("signs")
            .is_none()
    );
}

#[test]
fn signature_tags_and_oversigned_names() {
    let keys = Keys::new();
    let signer = Signer::from_config(&section(vec![
        keys.entry("example.com", "rsa1", Algorithm::RsaSha256),
        keys.entry("example.com", "ed1", Algorithm::Ed25519Sha256),
    ]))
    .expect("loads");
    let out = signer
        .sign(MESSAGE.as_bytes())
        .expect("signs")
        .expect("a key applies");
    let fields = parse(&out);
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[0]["a"], "rsa-sha256");
    assert_eq!(fields[0]["s"], "rsa1");
    assert_eq!(fields[1]["a"], "ed25519-sha256");
    assert_eq!(fields[1]["s"], "ed1");
    for tags in &fields {
        assert_eq!(tags["d"], "example.com");
        assert_eq!(tags["c"], "relaxed/relaxed");
        assert!(tags["t"].parse::<u64>().expect("numeric t=") > 1_700_000_000);
        let mut names: Vec<String> = tags["h"].split(':').map(str::to_ascii_lowercase).collect();
        names.sort();
        // Present fields once, over-signed ones once more; absent From/To/Subject
        // would appear once, absent List-Unsubscribe-Post not at all.
        assert_eq!(
            names,
            [
                "date",
                "from",
                "from",
                "list-unsubscribe",
                "list-unsubscribe",
                "subject",
                "subject",
                "to",
                "to"
            ]
        );
    }
}

#[test]
fn absent_oversigned_names_appear_once() {
    let keys = Keys::new();
    let signer = Signer::from_config(&section(vec![keys.entry(
        "example.com",
        "s",
        Algorithm::Ed25519Sha256,
    )]))
    .expect("loads");
    let out = signer
        .sign(b"From: a@example.com\r\nTo: x@y\r\nTo: z@y\r\n\r\nbody\r\n")
        .expect("signs")
        .expect("a key applies");
    let mut names: Vec<String> = parse(&out)[0]["h"]
        .split(':')
        .map(str::to_ascii_lowercase)
        .collect();
    names.sort();
    assert_eq!(names, ["from", "from", "subject", "to", "to", "to"]);
}

#[test]
fn from_is_always_signed() {
    let keys = Keys::new();
    let signer = Signer::from_config(&DkimSection {
        headers: vec!["Subject".into(), "subject".into()],
        oversign: Vec::new(),
        ..section(vec![keys.entry(
            "example.com",
            "s",
            Algorithm::Ed25519Sha256,
        )])
    })
    .expect("loads");
    let out = signer
        .sign(b"Subject: x\r\nFrom: a@example.com\r\n\r\nbody\r\n")
        .expect("signs")
        .expect("a key applies");
    let mut names: Vec<String> = parse(&out)[0]["h"]
        .split(':')
        .map(str::to_ascii_lowercase)
        .collect();
    names.sort();
    assert_eq!(names, ["from", "subject"]);
}
