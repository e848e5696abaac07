//! DKIM signatures checked by an independent verifier (Python dkimpy).
//!
//! Keys are generated per run; the public keys reach the verifier through a
//! DNS function that answers from a file, so no DNS traffic is sent. dkimpy
//! (and PyNaCl for Ed25519) is installed once into the target directory when
//! missing; that is the only network access.

mod common;

use common::dkim::{TestKeys, make_keys};
use mta::dkim::{Algorithm, DkimKeyConfig, DkimSection, Signer};

/// Key files, DNS records and a signer for `example.com` with one RSA-2048
/// (selector `rsa`) and one Ed25519 key (selector `ed`).
struct Fixture {
    keys: TestKeys,
    _dir: tempfile::TempDir,
    rsa: DkimKeyConfig,
    ed: DkimKeyConfig,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = make_keys(dir.path());
        let (rsa_file, ed_file) = (keys.rsa_file.clone(), keys.ed_file.clone());
        let key = |selector: &str, algorithm, key_file| DkimKeyConfig {
            domain: "example.com".into(),
            selector: selector.into(),
            algorithm,
            key_file,
        };
        Fixture {
            rsa: key("rsa", Algorithm::RsaSha256, rsa_file),
            ed: key("ed", Algorithm::Ed25519Sha256, ed_file),
            keys,
            _dir: dir,
        }
    }

    fn signer(&self, keys: &[&DkimKeyConfig], oversign: bool) -> Signer {
        let mut section = DkimSection {
            enabled: true,
            keys: keys.iter().map(|k| (*k).clone()).collect(),
            ..DkimSection::default()
        };
        if !oversign {
            section.oversign.clear();
        }
        Signer::from_config(&section).expect("keys load")
    }

    /// Signs `message` and returns the signed message.
    fn sign(&self, signer: &Signer, message: &str) -> Vec<u8> {
        let mut signed = signer
            .sign(message.as_bytes())
            .expect("signs")
            .expect("a key applies");
        signed.extend_from_slice(message.as_bytes());
        signed
    }

    /// dkimpy's verdict for each signature of `message`, top to bottom.
    fn verify(&self, message: &[u8]) -> Vec<String> {
        common::dkim::verify(&self.keys, message)
    }
}

/// A 4 KiB-ish message with the usual bulk-mail fields, one of them folded.
fn message() -> String {
    let mut m = String::from(
        "From: \"Example News\" <news@Example.com>\r\n\
         To: reader@example.net\r\n\
         Subject: Weekly   digest\r\n\
         \tfolded part\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <1234@example.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         List-Unsubscribe: <https://example.com/u/1>\r\n\
         List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
         X-Mailer-Id: 42\r\n\
         \r\n",
    );
    for i in 0..67 {
        m += &format!("Line {i} of the digest,  with  some   spaces \t and text.\r\n");
    }
    m += "\r\n\r\n";
    m
}

#[test]
fn rsa_signature_passes() {
    let f = Fixture::new();
    let signed = f.sign(&f.signer(&[&f.rsa], true), &message());
    assert!(signed.starts_with(b"DKIM-Signature: v=1; a=rsa-sha256; s=rsa; d=example.com;"));
    assert_eq!(f.verify(&signed), ["pass"]);
}

#[test]
fn ed25519_signature_passes() {
    let f = Fixture::new();
    let signed = f.sign(&f.signer(&[&f.ed], true), &message());
    assert_eq!(f.verify(&signed), ["pass"]);
}

#[test]
fn rsa_and_ed25519_side_by_side_pass() {
    let f = Fixture::new();
    let signed = f.sign(&f.signer(&[&f.rsa, &f.ed], true), &message());
    assert_eq!(f.verify(&signed), ["pass", "pass"]);
}

#[test]
fn tampered_body_fails() {
    let f = Fixture::new();
    let signed = f.sign(&f.signer(&[&f.rsa, &f.ed], true), &message());
    let tampered = String::from_utf8(signed)
        .expect("ASCII")
        .replace("Line 7 ", "Line 8 ");
    assert_eq!(f.verify(tampered.as_bytes()), ["fail", "fail"]);
}

#[test]
fn tampered_signed_header_fails() {
    let f = Fixture::new();
    let signed = f.sign(&f.signer(&[&f.rsa, &f.ed], true), &message());
    let text = String::from_utf8(signed).expect("ASCII");
    let tampered = text.replace("Subject: Weekly", "Subject: Daily");
    assert_eq!(f.verify(tampered.as_bytes()), ["fail", "fail"]);
    // An unsigned field may change.
    let unsigned = text.replace("X-Mailer-Id: 42", "X-Mailer-Id: 43");
    assert_eq!(f.verify(unsigned.as_bytes()), ["pass", "pass"]);
}

/// Inserts `field` above the first field named like the start of `before`.
fn add_field(signed: Vec<u8>, before: &str, field: &str) -> String {
    let text = String::from_utf8(signed).expect("ASCII");
    text.replacen(before, &format!("{field}\r\n{before}"), 1)
}

#[test]
fn added_from_fails() {
    let f = Fixture::new();
    let signed = f.sign(&f.signer(&[&f.rsa, &f.ed], true), &message());
    let tampered = add_field(
        signed,
        "From: \"Example News\"",
        "From: evil@attacker.example",
    );
    assert_eq!(f.verify(tampered.as_bytes()), ["fail", "fail"]);
}

#[test]
fn added_subject_fails_only_when_oversigned() {
    let f = Fixture::new();
    let evil = "Subject: Your account is locked";
    let oversigned = f.sign(&f.signer(&[&f.rsa, &f.ed], true), &message());
    let tampered = add_field(oversigned, "Subject: Weekly", evil);
    assert_eq!(f.verify(tampered.as_bytes()), ["fail", "fail"]);
    // The control case: without over-signing the addition goes unnoticed.
    // (From cannot serve here: dkimpy always treats From as over-signed.)
    let plain = f.sign(&f.signer(&[&f.rsa, &f.ed], false), &message());
    let tampered = add_field(plain, "Subject: Weekly", evil);
    assert_eq!(f.verify(tampered.as_bytes()), ["pass", "pass"]);
}

/// Measures RSA signing; run with `cargo test --release --test dkim_verify -- --ignored --nocapture`.
#[test]
#[ignore]
fn rsa_signing_time() {
    let f = Fixture::new();
    let message = message();
    assert!(message.len() >= 4_096);
    for (name, keys) in [("rsa-2048", [&f.rsa]), ("ed25519", [&f.ed])] {
        let signer = f.signer(&keys, true);
        let start = std::time::Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(signer.sign(message.as_bytes()).expect("signs"));
        }
        println!(
            "{name}: {:?} per message ({} bytes)",
            start.elapsed() / 1000,
            message.len()
        );
    }
}
