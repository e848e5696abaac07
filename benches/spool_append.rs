//! Spool append throughput with group commit.
//!
//! What it measures: 4 KiB message records appended by 1, 16 and 64 concurrent appenders on
//! one glommio executor, `SyncMode::Always` (every acknowledgement waits for its fdatasync),
//! in a temp dir on the same file system as `target/` (override with `SPOOL_BENCH_DIR`; a
//! tmpfs would make fdatasync free and the numbers meaningless). Criterion reports records/s
//! (throughput in elements); records per fdatasync is printed after each case.
//!
//! What it does not measure: SMTP, recovery, deletion (every record stays queued).

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use glommio::{LocalExecutorBuilder, Placement};
use mta::spool::{MessageRecord, Recipient, Spool, SpoolConfig};

fn record(id: u64) -> MessageRecord {
    MessageRecord {
        id,
        reverse_path: "bulk@sender.example".into(),
        mail_params: vec![("BODY".into(), Some("8BITMIME".into()))],
        recipients: vec![Recipient::new(format!("user{id}@receiver.example"))],
        arrival_unix_ms: 1_700_000_000_000,
        client_addr: "192.0.2.10:40000".into(),
        helo: "app.sender.example".into(),
        tls: None,
        auth: None,
        campaign: None,
        tenant: None,
        body: vec![b'x'; 4096],
        priority: 0,
    }
}

fn bench_dir() -> PathBuf {
    std::env::var_os("SPOOL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn spool_append(c: &mut Criterion) {
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(2 << 20)
        .make()
        .expect("executor");
    let mut group = c.benchmark_group("spool_append");
    group.throughput(Throughput::Elements(1));
    for appenders in [1u64, 16, 64] {
        let syncs = Rc::new(Cell::new(0u64));
        let records = Rc::new(Cell::new(0u64));
        group.bench_function(format!("{appenders}_appenders"), |b| {
            b.iter_custom(|iters| {
                let (syncs, records) = (syncs.clone(), records.clone());
                ex.run(async move {
                    let tmp = tempfile::Builder::new()
                        .prefix("spool-bench")
                        .tempdir_in(bench_dir())
                        .expect("temp dir");
                    let (spool, _) = Spool::open(SpoolConfig::new(tmp.path().join("shard-0"), 0))
                        .await
                        .expect("open");
                    let before = spool.stats();
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..appenders)
                        .map(|a| {
                            let sp = spool.clone();
                            let n = iters / appenders + u64::from(a < iters % appenders);
                            glommio::spawn_local(async move {
                                for i in 0..n {
                                    sp.append_message(&record(a << 40 | i))
                                        .await
                                        .expect("append");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await;
                    }
                    let elapsed: Duration = start.elapsed();
                    let after = spool.stats();
                    syncs.set(syncs.get() + after.commits - before.commits);
                    records.set(records.get() + after.records - before.records);
                    spool.close().await.expect("close");
                    elapsed
                })
            })
        });
        println!(
            "spool_append/{appenders}_appenders: {:.1} records per fdatasync ({} records, {} syncs)",
            records.get() as f64 / syncs.get().max(1) as f64,
            records.get(),
            syncs.get()
        );
    }
    group.finish();
}

criterion_group!(benches, spool_append);
criterion_main!(benches);
