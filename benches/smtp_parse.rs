//! Micro-benchmarks of the SMTP hot paths: command parsing, DATA decoding (dot-unstuffing and
//! end-of-data detection; the span-copying decoder against its byte-exact state machine alone)
//! and client-side dot-stuffing.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use mta::smtp::command::parse_command;
use mta::smtp::data::{BareLineEnding, DataDecoder, DataEvent, dot_stuff};

/// A message of about `size` octets: 76-column text lines, some starting with a dot.
fn message(size: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(size + 100);
    body.extend_from_slice(b"Subject: benchmark\r\nFrom: a@example.com\r\n\r\n");
    let mut n = 0;
    while body.len() < size {
        if n % 20 == 0 {
            body.extend_from_slice(b".");
        }
        body.extend_from_slice(
            &b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnop"[..],
        );
        body.extend_from_slice(b"\r\n");
        n += 1;
    }
    body
}

fn commands(c: &mut Criterion) {
    let lines: [&[u8]; 4] = [
        b"MAIL FROM:<newsletter-bounces+12345@lists.example.com> SIZE=4096 BODY=8BITMIME",
        b"RCPT TO:<subscriber.name@example.org>",
        b"DATA",
        b"EHLO client.example.com",
    ];
    let mut g = c.benchmark_group("command");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("parse_4_commands", |b| {
        b.iter(|| {
            for l in lines {
                black_box(parse_command(black_box(l), false).unwrap());
            }
        })
    });
    g.finish();
}

fn data(c: &mut Criterion) {
    let mut g = c.benchmark_group("data");
    for size in [4 * 1024, 1024 * 1024] {
        let body = message(size);
        let mut wire = Vec::new();
        dot_stuff(&body, &mut wire);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        for (name, make) in [
            (
                "decode",
                DataDecoder::new as fn(u64, BareLineEnding) -> DataDecoder,
            ),
            ("decode_state_machine", DataDecoder::state_machine_only),
        ] {
            g.bench_function(format!("{name}_{size}"), |b| {
                let mut out = Vec::with_capacity(body.len());
                b.iter(|| {
                    out.clear();
                    let mut d = make(u64::MAX, BareLineEnding::Reject);
                    let ev = d.decode(black_box(&wire), &mut out);
                    assert!(matches!(ev, DataEvent::End { .. }));
                })
            });
        }
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("dot_stuff_{size}"), |b| {
            let mut out = Vec::with_capacity(wire.len());
            b.iter(|| {
                out.clear();
                dot_stuff(black_box(&body), &mut out);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, commands, data);
criterion_main!(benches);
