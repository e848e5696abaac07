//! Scheduler tests with a fake clock (a base `Instant` plus offsets).

use super::*;

fn policy() -> RetryPolicy {
    RetryPolicy {
        first: Duration::from_secs(300),
        max: Duration::from_secs(3600),
        multiplier: 2.0,
        jitter: 0.0,
        lifetime: Duration::from_secs(5 * 86400),
    }
}

fn key(s: &str) -> DestinationKey {
    DestinationKey(s.into())
}

fn job(message: u64, n: u32, attempts: u32, arrival: Instant) -> Job {
    Job {
        message,
        recipients: (0..n).collect(),
        domain: "d.test".into(),
        attempts,
        arrival,
        priority: Class::Normal,
    }
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let s = Scheduler::new(policy(), 1);
    let waits: Vec<u64> = (1..=6).map(|a| s.backoff(a).as_secs()).collect();
    assert_eq!(waits, [300, 600, 1200, 2400, 3600, 3600]);
}

#[test]
fn jitter_stays_in_bounds() {
    let mut p = policy();
    p.jitter = 0.1;
    let mut s = Scheduler::new(p, 42);
    let t0 = Instant::now();
    for _ in 0..200 {
        let DeferOutcome::Scheduled { at } = s.defer(job(1, 1, 1, t0), t0) else {
            panic!()
        };
        let w = (at - t0).as_secs_f64();
        assert!((270.0..=330.0).contains(&w), "{w}");
    }
}

#[test]
fn deferred_jobs_come_due_and_wakeup_is_exact() {
    let mut s = Scheduler::new(policy(), 1);
    let t0 = Instant::now();
    assert_eq!(
        s.defer(job(1, 1, 1, t0), t0),
        DeferOutcome::Scheduled { at: secs(t0, 300) }
    );
    assert_eq!(
        s.defer(job(2, 1, 2, t0), t0),
        DeferOutcome::Scheduled { at: secs(t0, 600) }
    );
    let p = s.poll(secs(t0, 10));
    assert!(p.due.is_empty());
    assert_eq!(p.next_wakeup, Some(secs(t0, 300)));
    let p = s.poll(secs(t0, 300));
    assert_eq!(p.due.len(), 1);
    assert_eq!(p.due[0].message, 1);
    assert_eq!(p.next_wakeup, Some(secs(t0, 600)));
    assert_eq!(s.deferred_len(), 1);
}

#[test]
fn lifetime_expires_jobs() {
    let mut s = Scheduler::new(policy(), 1);
    let t0 = Instant::now();
    let arrival = t0;
    let late = secs(t0, 5 * 86400 - 100);
    assert!(matches!(
        s.defer(job(1, 1, 10, arrival), late),
        DeferOutcome::Expired(_)
    ));
}

#[test]
fn new_and_retried_jobs_take_turns_and_big_jobs_split() {
    let mut s = Scheduler::new(policy(), 1);
    let t0 = Instant::now();
    let k = key("mx:a");
    s.set_limits(
        &k,
        Limits {
            max_recipients_per_transaction: 2,
            ..Limits::default()
        },
    );
    s.submit(&k, job(1, 5, 0, t0), t0);
    s.submit(&k, job(2, 1, 3, t0), t0);
    s.submit(&k, job(3, 1, 3, t0), t0);
    assert_eq!(s.ready_len(), 5);
    let order: Vec<(u64, usize)> = std::iter::from_fn(|| s.next_job(&k, t0))
        .map(|j| (j.message, j.recipients.len()))
        .collect();
    assert_eq!(order, [(1, 2), (2, 1), (1, 2), (3, 1), (1, 1)]);
}

#[test]
fn connections_respect_the_limit_with_slow_start() {
    let mut s = Scheduler::new(policy(), 1);
    let t0 = Instant::now();
    let k = key("route:x");
    s.set_limits(
        &k,
        Limits {
            max_connections: 3,
            ..Limits::default()
        },
    );
    for m in 0..10 {
        s.submit(&k, job(m, 1, 0, t0), t0);
    }
    assert_eq!(s.poll(t0).open, std::slice::from_ref(&k));
    // The pending open counts, and slow start: one more per poll while jobs outnumber them.
    assert_eq!(s.poll(t0).open, std::slice::from_ref(&k));
    let mut total_asked = 2;
    s.connection_opened(&k);
    s.connection_opened(&k);
    for _ in 0..10 {
        total_asked += s.poll(t0).open.len();
    }
    assert_eq!(total_asked, 3, "never more than max_connections");
    s.connection_open_failed(&k);
    assert_eq!(s.poll(t0).open.len(), 1, "a failed open frees its slot");
}

#[test]
fn suspension_blocks_open_and_next_job_until_it_ends() {
    let mut s = Scheduler::new(policy(), 1);
    let t0 = Instant::now();
    let k = key("mx:b");
    s.set_limits(&k, Limits::default());
    s.submit(&k, job(1, 1, 0, t0), t0);
    s.suspend(&k, secs(t0, 60), "421".into());
    let p = s.poll(t0);
    assert!(p.open.is_empty());
    assert_eq!(p.next_wakeup, Some(secs(t0, 60)));
    assert!(s.next_job(&k, t0).is_none());
    assert_eq!(s.poll(secs(t0, 60)).open, std::slice::from_ref(&k));
    assert!(s.next_job(&k, secs(t0, 60)).is_some());
}

#[test]
fn an_empty_suspended_destination_is_kept_until_its_suspension_ends() {
    let mut s = Scheduler::new(policy(), 1);
    let t0 = Instant::now();
    let k = key("route:a.test");
    s.suspend(&k, secs(t0, 3600), "suspended by an administrator".into());
    s.poll(secs(t0, 600));
    assert!(s.knows(&k), "still suspended: kept with nothing queued");
    s.poll(secs(t0, 3601));
    assert!(!s.knows(&k), "ended and idle: forgotten");
}

#[test]
fn consecutive_failures_suspend_with_doubling_backoff_and_reset() {
    let mut s = Scheduler::new(policy(), 1);
    s.set_failure_policy(FailurePolicy {
        threshold: 2,
        backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(100),
    });
    let t0 = Instant::now();
    let k = key("mx:c");
    assert_eq!(s.connect_failed(&k, t0), None);
    assert_eq!(s.connect_failed(&k, t0), Some(secs(t0, 60)));
    assert_eq!(s.connect_failed(&k, t0), None);
    assert_eq!(
        s.connect_failed(&k, t0),
        Some(secs(t0, 100)),
        "doubled, capped"
    );
    s.connect_succeeded(&k);
    assert_eq!(s.connect_failed(&k, t0), None);
    assert_eq!(
        s.connect_failed(&k, t0),
        Some(secs(t0, 60)),
        "reset after success"
    );
}

#[test]
fn rate_limit_refills_and_sets_the_wakeup() {
    let mut s = Scheduler::new(policy(), 1);
    let t0 = Instant::now();
    let k = key("mx:r");
    s.set_limits(
        &k,
        Limits {
            rate: Some(Rate {
                messages: 2,
                per: Duration::from_secs(10),
            }),
            ..Limits::default()
        },
    );
    for m in 0..5 {
        s.submit(&k, job(m, 1, 0, t0), t0);
    }
    assert_eq!(s.poll(t0).open.len(), 1);
    s.connection_opened(&k);
    assert!(s.next_job(&k, t0).is_some());
    assert!(s.next_job(&k, t0).is_some());
    assert!(s.next_job(&k, t0).is_none(), "burst used up");
    let p = s.poll(t0);
    assert_eq!(p.next_wakeup, Some(secs(t0, 5)), "one token per 5s");
    assert!(s.next_job(&k, secs(t0, 5)).is_some());
}

#[test]
fn remove_message_and_flush() {
    let mut s = Scheduler::new(policy(), 1);
    let t0 = Instant::now();
    let k = key("mx:f");
    s.set_limits(&k, Limits::default());
    s.submit(&k, job(7, 1, 0, t0), t0);
    let _ = s.defer(job(7, 1, 1, t0), t0);
    let _ = s.defer(job(8, 1, 1, t0), t0);
    assert_eq!(s.remove_message(7).len(), 2);
    assert_eq!(s.ready_len(), 0);
    s.flush(t0);
    let p = s.poll(t0);
    assert_eq!(p.due.len(), 1);
    assert_eq!(p.due[0].message, 8);
}

#[test]
fn every_job_comes_out_exactly_once() {
    use std::collections::HashSet;
    let mut s = Scheduler::new(policy(), 9);
    let t0 = Instant::now();
    let keys: Vec<DestinationKey> = (0..5).map(|i| key(&format!("mx:{i}"))).collect();
    let mut submitted = HashSet::new();
    for m in 0..200u64 {
        let k = &keys[(m % 5) as usize];
        s.set_limits(
            k,
            Limits {
                max_connections: 2,
                ..Limits::default()
            },
        );
        s.submit(k, job(m, 1, 0, t0), t0);
        submitted.insert(m);
    }
    let mut seen = HashSet::new();
    let mut now = t0;
    for round in 0..400 {
        let p = s.poll(now);
        for d in p.due {
            s.submit(&keys[(d.message % 5) as usize], d, now);
        }
        for k in p.open {
            s.connection_opened(&k);
        }
        for k in &keys {
            let e = s.explain(k, now).map_or(0, |e| e.connections);
            assert!(e <= 2);
            if let Some(j) = s.next_job(k, now) {
                if round % 3 == 0 && j.attempts == 0 {
                    let _ = s.defer(Job { attempts: 1, ..j }, now);
                } else {
                    assert!(seen.insert(j.message), "job {} handed out twice", j.message);
                }
            }
        }
        now += Duration::from_secs(60);
    }
    assert_eq!(seen, submitted);
}

#[test]
fn extreme_waits_saturate_instead_of_panicking() {
    let t0 = Instant::now();
    assert_eq!(later(t0, Duration::MAX), later(t0, FAR_FUTURE));
    assert!(later(t0, Duration::MAX) > secs(t0, 50 * 365 * 86_400));
    assert_eq!(later(t0, Duration::from_secs(5)), secs(t0, 5));
    assert_eq!(secs_f64(f64::INFINITY), Duration::MAX);
    assert_eq!(secs_f64(1e300), Duration::MAX);
    assert_eq!(secs_f64(-1.0), Duration::ZERO);
    assert_eq!(secs_f64(f64::NAN), Duration::ZERO);

    // A retry schedule of the longest durations: scheduled far away, not a panic.
    let huge = RetryPolicy {
        first: Duration::MAX,
        max: Duration::MAX,
        multiplier: 10.0,
        jitter: 0.5,
        lifetime: Duration::MAX,
    };
    let mut s = Scheduler::new(huge, 7);
    for attempts in [1, 2, 64, u32::MAX] {
        match s.defer(job(attempts.into(), 1, attempts, t0), t0) {
            DeferOutcome::Scheduled { at } => assert!(at > t0),
            DeferOutcome::Expired(_) => panic!("nothing outlives a hundred years' lifetime"),
        }
    }

    // Connection-failure backoff of the longest duration, doubled.
    s.set_failure_policy(FailurePolicy {
        threshold: 1,
        backoff: Duration::MAX,
        max_backoff: Duration::MAX,
    });
    let k = key("mx:far");
    for _ in 0..3 {
        assert_eq!(s.connect_failed(&k, t0), Some(later(t0, FAR_FUTURE)));
    }

    // A rate of one message per longest period: the next token is far away.
    let mut s = Scheduler::new(policy(), 1);
    let slow = Rate {
        messages: 1,
        per: Duration::MAX,
    };
    let k = key("mx:slow");
    s.set_limits(
        &k,
        Limits {
            max_connections: 4,
            max_messages_per_connection: 10,
            max_recipients_per_transaction: 10,
            rate: Some(slow),
            connection_rate: Some(slow),
        },
    );
    for m in 0..3 {
        s.submit(&k, job(m, 1, 0, t0), t0);
    }
    let first = s.poll(t0);
    assert_eq!(first.open, vec![k.clone()]);
    s.connection_opened(&k);
    assert!(s.next_job(&k, t0).is_some());
    assert!(s.next_job(&k, t0).is_none(), "the bucket is empty");
    let again = s.poll(t0);
    assert!(again.open.is_empty());
    assert!(again.next_wakeup.is_some_and(|w| w > secs(t0, 86_400)));
}

#[test]
fn two_schedulers_sharing_a_host_share_its_connection_limit() {
    let host = std::sync::Arc::new(crate::queue::HostLimits::new());
    let mut a = Scheduler::with_host(policy(), 1, host.clone());
    let mut b = Scheduler::with_host(policy(), 2, host);
    let d = DestinationKey("mx:shared".into());
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let now = Instant::now();
    for (i, s) in [&mut a, &mut b].into_iter().enumerate() {
        s.set_limits(&d, limits.clone());
        for m in 0..5 {
            s.submit(&d, job(10 * i as u64 + m, 1, 0, now), now);
        }
    }
    // Slow start opens one per poll: two polls on a, then b finds the host at its limit.
    assert_eq!(a.poll(now).open, vec![d.clone()]);
    a.connection_opened(&d);
    assert_eq!(a.poll(now).open, vec![d.clone()]);
    let p = b.poll(now);
    assert!(p.open.is_empty(), "b must not pass the host-wide limit");
    assert!(p.next_wakeup.is_some(), "b looks again soon");
    let seen = b.explain(&d, now).unwrap();
    assert_eq!((seen.connections, seen.host_connections), (0, 2));
    assert!(!b.yield_lease(&d, now), "b has mail of its own");
    // a's connection closes: b gets the lease.
    a.connection_closed(&d);
    assert_eq!(b.poll(now).open, vec![d.clone()]);
    assert_eq!(b.explain(&d, now).unwrap().host_connections, 2);
}

#[test]
fn siblings_of_a_message_join_its_transaction_up_to_the_recipient_limit() {
    let mut s = Scheduler::new(policy(), 1);
    let t0 = Instant::now();
    let d = key("route:*.news.test");
    s.set_limits(
        &d,
        Limits {
            max_recipients_per_transaction: 5,
            ..Limits::default()
        },
    );
    // Message 1: jobs of 2, 2 and 2 recipients (three domains); message 2 between them.
    s.submit(&d, job(1, 2, 0, t0), t0);
    s.submit(&d, job(2, 1, 0, t0), t0);
    s.submit(&d, job(1, 2, 0, t0), t0);
    s.submit(&d, job(1, 2, 0, t0), t0);
    let first = s.next_job(&d, t0).expect("a job");
    assert_eq!(first.message, 1);
    let more = s.take_siblings(&d, &first);
    // 2 + 2 fit in 5; the third job of 2 would make 6 and waits.
    assert_eq!(more.len(), 1);
    assert!(more.iter().all(|j| j.message == 1));
    let next = s.next_job(&d, t0).expect("a job");
    assert_eq!(next.message, 2);
    assert!(s.take_siblings(&d, &next).is_empty());
    let last = s.next_job(&d, t0).expect("a job");
    assert_eq!((last.message, last.recipients.len()), (1, 2));
    assert!(s.take_siblings(&d, &last).is_empty());
    assert_eq!(s.ready_len(), 0);
    // Retries and new mail are not mixed, and an unknown destination has none.
    s.submit(&d, job(3, 1, 0, t0), t0);
    s.submit(&d, job(3, 1, 1, t0), t0);
    let new = s.next_job(&d, t0).expect("a job");
    assert!(s.take_siblings(&d, &new).is_empty());
    assert!(s.take_siblings(&key("route:none"), &new).is_empty());
}
