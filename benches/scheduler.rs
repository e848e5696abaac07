//! Micro-benchmarks of the delivery scheduler: submit + next_job over many destinations,
//! defer + poll with a large timer heap, and one pick from a destination with a backlog of
//! 100,000 bulk jobs, alone or with transactional and normal jobs waiting too.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mta::priority::Class;
use mta::queue::{DestinationKey, Job, Limits, RetryPolicy, Scheduler};

fn policy() -> RetryPolicy {
    RetryPolicy {
        first: Duration::from_secs(300),
        max: Duration::from_secs(3600),
        multiplier: 2.0,
        jitter: 0.1,
        lifetime: Duration::from_secs(5 * 86400),
    }
}

fn job(m: u64, now: Instant) -> Job {
    Job {
        message: m,
        recipients: [0].as_slice().into(),
        domain: "d.test".into(),
        attempts: 0,
        arrival: now,
        priority: Class::Normal,
    }
}

fn submit_and_take(c: &mut Criterion) {
    let keys: Vec<DestinationKey> = (0..1000)
        .map(|i| DestinationKey(format!("mx:{i}")))
        .collect();
    let mut g = c.benchmark_group("scheduler");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("submit_next_job_10k_over_1000_destinations", |b| {
        let now = Instant::now();
        b.iter_batched(
            || {
                let mut s = Scheduler::new(policy(), 7);
                for k in &keys {
                    s.set_limits(k, Limits::default());
                }
                s
            },
            |mut s| {
                for m in 0..10_000u64 {
                    s.submit(&keys[(m % 1000) as usize], job(m, now), now);
                }
                for k in &keys {
                    while let Some(j) = s.next_job(k, now) {
                        black_box(j);
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn defer_and_poll(c: &mut Criterion) {
    let now = Instant::now();
    let mut s = Scheduler::new(policy(), 9);
    for m in 0..1_000_000u64 {
        let _ = s.defer(
            Job {
                attempts: 1,
                ..job(m, now)
            },
            now,
        );
    }
    let mut g = c.benchmark_group("scheduler");
    g.throughput(Throughput::Elements(1));
    let mut m = 1_000_000u64;
    g.bench_function("defer_plus_poll_with_1m_deferred", |b| {
        b.iter(|| {
            m += 1;
            let _ = s.defer(
                Job {
                    attempts: 1,
                    ..job(m, now)
                },
                now,
            );
            black_box(s.poll(now));
        })
    });
    g.finish();
}

/// One pick (and the job queued again, so the backlog stays) from one destination holding
/// 100,000 bulk jobs, with `others` transactional and normal jobs waiting too.
fn pick_from_backlog(c: &mut Criterion) {
    let now = Instant::now();
    let key = DestinationKey("mx:big".into());
    let mut g = c.benchmark_group("scheduler");
    g.throughput(Throughput::Elements(1));
    for (name, others) in [("bulk_only", 0u64), ("three_classes", 1000)] {
        let mut s = Scheduler::new(policy(), 11);
        s.set_limits(&key, Limits::default());
        for m in 0..100_000u64 {
            s.submit(
                &key,
                Job {
                    priority: Class::Bulk,
                    ..job(m, now)
                },
                now,
            );
        }
        for m in 0..others {
            let class = [Class::Transactional, Class::Normal][(m % 2) as usize];
            s.submit(
                &key,
                Job {
                    priority: class,
                    ..job(m, now)
                },
                now,
            );
        }
        g.bench_function(format!("pick_from_100k_backlog_{name}"), |b| {
            b.iter(|| {
                let j = s.next_job(&key, now).expect("a job");
                s.submit(&key, black_box(j), now);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, submit_and_take, defer_and_poll, pick_from_backlog);
criterion_main!(benches);
