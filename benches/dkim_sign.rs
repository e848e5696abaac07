//! What DKIM signing costs per message, and where: the whole `Signer::sign` of a 4 KiB
//! newsletter-shaped message with an Ed25519 key, against its parts (the SHA-256 of the body,
//! the bare Ed25519 signature of a hash), so that the cost beyond the cryptography shows.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mta::dkim::{Algorithm, DkimKeyConfig, DkimSection, Signer};
use ring::signature::Ed25519KeyPair;

fn message(size: usize) -> Vec<u8> {
    let mut m = b"From: News <news@loadgen.test>\r\nTo: someone@example.com\r\n\
Subject: This week's offers\r\nDate: Fri, 04 Dec 2026 17:00:00 +0000\r\n\
Message-ID: <abc.123@loadgen.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\
List-Unsubscribe: <https://loadgen.test/u/1>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n"
        .to_vec();
    let line =
        b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

fn sign(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pkcs8.as_ref())
    );
    let key_file = dir.path().join("ed.pem");
    std::fs::write(&key_file, pem).unwrap();
    let section = DkimSection {
        enabled: true,
        keys: vec![DkimKeyConfig {
            domain: "loadgen.test".into(),
            selector: "bench".into(),
            algorithm: Algorithm::Ed25519Sha256,
            key_file,
        }],
        ..DkimSection::default()
    };
    let signer = Signer::from_config(&section).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let msg = message(4096);
    let mut g = c.benchmark_group("dkim_4k");
    g.throughput(Throughput::Elements(1));
    g.bench_function("signer_ed25519", |b| {
        b.iter(|| signer.sign(black_box(&msg)).unwrap())
    });
    g.bench_function("sha256_of_message", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&msg)))
    });
    g.bench_function("sha256_of_message_aws_lc", |b| {
        b.iter(|| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, black_box(&msg)))
    });
    let hash = ring::digest::digest(&ring::digest::SHA256, &msg);
    g.bench_function("ed25519_sign_of_hash", |b| {
        b.iter(|| pair.sign(black_box(hash.as_ref())))
    });
    let aws = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    g.bench_function("ed25519_sign_of_hash_aws_lc", |b| {
        b.iter(|| aws.sign(black_box(hash.as_ref())))
    });
    g.finish();
}

criterion_group!(benches, sign);
criterion_main!(benches);
