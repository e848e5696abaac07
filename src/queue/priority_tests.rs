//! Priority classes in the scheduler: higher classes first, a kept share for lower ones (no
//! class starves), retries keep their class, and a job costs no more memory than before.

use proptest::prelude::*;

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

fn job(message: u64, class: Class, now: Instant) -> Job {
    Job {
        message,
        recipients: [0].as_slice().into(),
        domain: "d.test".into(),
        attempts: 0,
        arrival: now,
        priority: class,
    }
}

fn dest() -> DestinationKey {
    DestinationKey("mx:d.test".into())
}

#[test]
fn a_job_costs_no_more_than_before_classes() {
    // message 8 + recipients 24 + domain 24 + attempts 4 + arrival 16: the class byte fits in
    // the padding.
    assert!(
        std::mem::size_of::<Job>() <= 80,
        "{}",
        std::mem::size_of::<Job>()
    );
}

#[test]
fn transactional_overtakes_a_bulk_backlog_and_bulk_keeps_its_slot() {
    let now = Instant::now();
    let mut s = Scheduler::new(policy(), 1);
    s.set_priority_share(10);
    for m in 0..1000 {
        s.submit(&dest(), job(m, Class::Bulk, now), now);
    }
    // Some bulk goes first (nothing else waits).
    for _ in 0..5 {
        assert_eq!(s.next_job(&dest(), now).unwrap().priority, Class::Bulk);
    }
    for m in 1000..1020 {
        s.submit(&dest(), job(m, Class::Transactional, now), now);
    }
    let classes: Vec<Class> = (0..22)
        .map(|_| s.next_job(&dest(), now).unwrap().priority)
        .collect();
    // The round is at slot 5: slots 5..8 transactional, 9 (kept for bulk) bulk, then slots
    // 0..8 transactional (8 is normal's, none waiting) and 9 bulk again.
    let bulk: Vec<usize> = (0..classes.len())
        .filter(|&i| classes[i] == Class::Bulk)
        .collect();
    assert_eq!(bulk, [4, 14], "{classes:?}");
    assert_eq!(
        classes
            .iter()
            .filter(|c| **c == Class::Transactional)
            .count(),
        20
    );
    let state = s.explain(&dest(), now).unwrap();
    assert_eq!(state.ready_by_class, [0, 0, 1000 - 5 - 2]);
}

#[test]
fn a_retry_keeps_its_class() {
    let now = Instant::now();
    let mut s = Scheduler::new(policy(), 1);
    let mut j = job(1, Class::Transactional, now);
    j.attempts = 1;
    let DeferOutcome::Scheduled { at } = s.defer(j, now) else {
        panic!("expired");
    };
    let due = s.poll(at).due;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].priority, Class::Transactional);
    s.submit(&dest(), due[0].clone(), at);
    s.submit(&dest(), job(2, Class::Bulk, at), at);
    assert_eq!(s.next_job(&dest(), at).unwrap().message, 1);
}

#[test]
fn siblings_come_from_the_first_jobs_class_only() {
    let now = Instant::now();
    let mut s = Scheduler::new(policy(), 1);
    s.set_limits(&dest(), Limits::default());
    s.submit(&dest(), job(7, Class::Bulk, now), now);
    s.submit(&dest(), job(7, Class::Transactional, now), now);
    s.submit(&dest(), job(7, Class::Transactional, now), now);
    let first = s.next_job(&dest(), now).unwrap();
    assert_eq!(first.priority, Class::Transactional);
    let siblings = s.take_siblings(&dest(), &first);
    assert_eq!(siblings.len(), 1);
    assert!(siblings.iter().all(|j| j.priority == Class::Transactional));
    assert_eq!(s.ready_len(), 1);
}

proptest! {
    /// Whatever the backlog of each class and the share, a class that has jobs waiting through
    /// `share` consecutive picks is served in them, and at most one pick per lower class in
    /// such a window goes to anything but the highest class waiting.
    #[test]
    fn no_class_starves(
        share in 3u32..40,
        counts in proptest::array::uniform3(0usize..300),
        arrivals in proptest::collection::vec((0usize..3, 0usize..600), 0..40),
    ) {
        let now = Instant::now();
        let mut s = Scheduler::new(policy(), 1);
        s.set_priority_share(share);
        let mut m = 0u64;
        for (c, &n) in counts.iter().enumerate() {
            for _ in 0..n {
                m += 1;
                s.submit(&dest(), job(m, Class::ALL[c], now), now);
            }
        }
        // (classes waiting before the pick, class picked)
        let mut picks: Vec<([bool; 3], Class)> = Vec::new();
        let total = counts.iter().sum::<usize>() + arrivals.len();
        for step in 0..total + 600 {
            for &(c, at) in &arrivals {
                if at == step {
                    m += 1;
                    s.submit(&dest(), job(m, Class::ALL[c], now), now);
                }
            }
            let waiting = s.explain(&dest(), now).map(|st| st.ready_by_class.map(|n| n > 0));
            if let Some(j) = s.next_job(&dest(), now) {
                picks.push((waiting.unwrap(), j.priority));
            }
        }
        prop_assert_eq!(picks.len(), total);
        let w = share as usize;
        for start in 0..picks.len().saturating_sub(w - 1) {
            let window = &picks[start..start + w];
            for c in Class::ALL {
                if window.iter().all(|(waiting, _)| waiting[c.index()]) {
                    prop_assert!(
                        window.iter().any(|(_, p)| *p == c),
                        "{:?} waited through picks {}..{} unserved", c, start, start + w
                    );
                }
            }
            let passed_over = window
                .iter()
                .filter(|(waiting, p)| {
                    let top = Class::ALL.into_iter().find(|c| waiting[c.index()]);
                    top != Some(*p)
                })
                .count();
            prop_assert!(passed_over < Class::COUNT, "{} picks passed the top class", passed_over);
        }
    }
}
