//! DKIM test material: an RSA-2048 key (selector `rsa`, PKCS#1 PEM) and an Ed25519 key
//! (selector `ed`, PKCS#8 PEM) for `example.com` with their DNS records in a file, and Python
//! dkimpy (installed once into the target directory) as the independent verifier, answering
//! DNS from that file: no DNS traffic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/dkim_verify.py");

/// The key files and the DNS records file written by [`make_keys`].
pub struct TestKeys {
    pub rsa_file: PathBuf,
    pub ed_file: PathBuf,
    pub records: PathBuf,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Generates both keys into `dir`.
pub fn make_keys(dir: &Path) -> TestKeys {
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
    let rsa_file = dir.join("rsa.pem");
    let pem = rsa_key.to_pkcs1_pem(LineEnding::LF).expect("PKCS#1");
    std::fs::write(&rsa_file, pem.as_bytes()).expect("write");
    let spki = rsa_key.to_public_key().to_public_key_der().expect("SPKI");
    let mut records = format!(
        "rsa._domainkey.example.com v=DKIM1; k=rsa; p={}\n",
        b64(spki.as_bytes())
    );
    let ed_file = dir.join("ed.pem");
    let public = make_ed25519_key(&ed_file);
    records += &format!("ed._domainkey.example.com v=DKIM1; k=ed25519; p={public}\n");
    let records_file = dir.join("records");
    std::fs::write(&records_file, records).expect("write");
    TestKeys {
        rsa_file,
        ed_file,
        records: records_file,
    }
}

/// Writes a new Ed25519 key (PKCS#8 PEM) to `path`; returns its public key in base64.
pub fn make_ed25519_key(path: &Path) -> String {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("Ed25519");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parses");
    let body = b64(pkcs8.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ASCII"))
        .collect();
    std::fs::write(
        path,
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        ),
    )
    .expect("write");
    b64(pair.public_key().as_ref())
}

/// The directory holding dkimpy and PyNaCl, installed on first use. A lock file keeps
/// concurrent test processes from installing at the same time.
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

/// dkimpy's verdict for each signature of `message`, top to bottom (`pass` or `fail`).
pub fn verify(keys: &TestKeys, message: &[u8]) -> Vec<String> {
    let path = keys.records.with_file_name("message.eml");
    std::fs::write(&path, message).expect("write");
    let output = Command::new("python3")
        .env("PYTHONPATH", pydeps())
        .arg(SCRIPT)
        .arg(&keys.records)
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
