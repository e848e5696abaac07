//! The suppression list's in-memory check, with 10 million entries: the time of one check
//! (hash of the normalised address and a probe of the table; listed and unlisted addresses,
//! picked at random so that the table is not in the cache) and the table's memory per entry
//! (printed before the timings); the standard library's `HashSet<u64>` of the same keys is the
//! baseline.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mta::suppression::table::{Meta, Table};
use mta::suppression::{Keyer, Kind};

const ENTRIES: usize = 10_000_000;
/// Addresses checked in turn (listed ones are among the entries).
const PROBES: usize = 1 << 20;

fn address(i: usize) -> String {
    format!("subscriber.{i}@mail{}.example.com", i % 5000)
}

/// A cheap permutation of the indices, so that consecutive probes land far apart.
fn scatter(i: usize) -> usize {
    (i.wrapping_mul(0x9e37_79b9) ^ (i >> 7)) % ENTRIES
}

fn check(c: &mut Criterion) {
    let keyer = Keyer::new();
    let table = Table::new();
    for i in 0..ENTRIES {
        table.insert(
            keyer.key("", &address(i)),
            Meta::new(Kind::HardBounce as u8, 0, 0),
        );
    }
    let bytes = table.memory_bytes();
    eprintln!(
        "suppression table: {} entries, {} bytes, {:.1} bytes per entry",
        table.len(),
        bytes,
        bytes as f64 / table.len() as f64
    );
    let listed: Vec<String> = (0..PROBES).map(|i| address(scatter(i))).collect();
    let unlisted: Vec<String> = (0..PROBES).map(|i| address(ENTRIES + i)).collect();
    // CPU time of the calling thread per check, next to wall time: on a shared machine the
    // wall time includes waiting for a core.
    for (name, probes) in [("listed", &listed), ("unlisted", &unlisted)] {
        let (cpu0, wall0) = (thread_cpu(), std::time::Instant::now());
        let mut found = 0usize;
        for _ in 0..4 {
            for a in probes.iter() {
                found += usize::from(table.get(keyer.key("", black_box(a))).is_some());
            }
        }
        let n = (4 * PROBES) as f64;
        eprintln!(
            "check {name}: {:.0} ns CPU, {:.0} ns wall per check ({found} found)",
            (thread_cpu() - cpu0).as_nanos() as f64 / n,
            wall0.elapsed().as_nanos() as f64 / n
        );
    }
    let mut g = c.benchmark_group("suppression");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("key_only", |b| {
        b.iter(|| {
            i = (i + 1) & (PROBES - 1);
            black_box(keyer.key("", black_box(&listed[i])))
        })
    });
    for (name, probes) in [
        ("check_listed_10m", &listed),
        ("check_unlisted_10m", &unlisted),
    ] {
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & (PROBES - 1);
                let a = &probes[i];
                black_box(table.get(keyer.key("", black_box(a))))
            })
        });
    }
    // The baseline: the same keys in the standard library's hash set (SipHash of the key).
    let set: std::collections::HashSet<u64> =
        (0..ENTRIES).map(|i| keyer.key("", &address(i))).collect();
    eprintln!(
        "std HashSet<u64> baseline: about {:.1} bytes per entry",
        (set.capacity() * 9) as f64 / set.len() as f64
    );
    for (name, probes) in [
        ("hashset_listed_10m", &listed),
        ("hashset_unlisted_10m", &unlisted),
    ] {
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & (PROBES - 1);
                black_box(set.contains(&keyer.key("", black_box(&probes[i]))))
            })
        });
    }
    drop(set);
    g.finish();
    let hits = listed
        .iter()
        .filter(|a| table.get(keyer.key("", a)).is_some())
        .count();
    assert_eq!(hits, PROBES, "every listed address is found");
}

/// The CPU time the calling thread has used.
fn thread_cpu() -> std::time::Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = check
}
criterion_main!(benches);
