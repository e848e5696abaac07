//! Tests of the host-wide limits: leases, rates, suspensions and reductions shared by threads,
//! and this host's share of a cluster's limits.

use super::*;

fn rate(messages: u32, secs: u64) -> Rate {
    Rate {
        messages,
        per: Duration::from_secs(secs),
    }
}

#[test]
fn leases_never_pass_the_limit_across_threads() {
    let host = Arc::new(HostLimits::new());
    let taken = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (host, taken) = (host.clone(), taken.clone());
            std::thread::spawn(move || {
                let d = host.entry("mx:a");
                for _ in 0..10_000 {
                    if d.try_lease(3) {
                        let now = taken.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 3, "{now} leases");
                        taken.fetch_sub(1, Ordering::SeqCst);
                        d.release();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(host.entry("mx:a").leases(), 0);
    host.entry("mx:a").release();
    assert_eq!(
        host.entry("mx:a").leases(),
        0,
        "a release never goes below zero"
    );
}

#[test]
fn a_rate_grants_its_burst_then_one_token_per_period() {
    let host = HostLimits::new();
    let d = host.entry("mx:a");
    let r = rate(5, 1);
    let t0 = Instant::now();
    for _ in 0..5 {
        assert!(d.take_message(t0, r).is_ok());
    }
    let due = d.take_message(t0, r).unwrap_err();
    let wait = due.duration_since(t0);
    assert!(
        wait > Duration::from_millis(190) && wait <= Duration::from_millis(200),
        "{wait:?}"
    );
    assert_eq!(d.message_due(t0, r), Some(due));
    assert!(d.take_message(due, r).is_ok());
    assert!(d.take_message(due, r).is_err());
    // Over 10 s from the start: at most the burst plus 10 s of tokens.
    let mut granted = 6;
    let mut now = due;
    let end = t0 + Duration::from_secs(10);
    while now < end {
        if d.take_message(now, r).is_ok() {
            granted += 1;
        }
        now += Duration::from_millis(7);
    }
    assert!((54..=55).contains(&granted), "{granted}");
    assert!(d.message_tokens(now + Duration::from_secs(60), r) >= 4.99);
}

#[test]
fn shards_share_a_rate_and_a_suspension() {
    let host = Arc::new(HostLimits::new());
    let r = rate(100, 1);
    let t0 = Instant::now();
    let counts: Vec<usize> = (0..2)
        .map(|_| {
            let host = host.clone();
            std::thread::spawn(move || {
                let d = host.entry("mx:b");
                (0..1000).filter(|_| d.take_message(t0, r).is_ok()).count()
            })
        })
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 100, "{counts:?}");
    let d = host.entry("mx:b");
    d.suspend(t0 + Duration::from_secs(60), "421 from a rule".into());
    let other = host.entry("mx:b");
    let (until, why) = other.suspension(t0).unwrap();
    assert_eq!(
        (until, why.as_str()),
        (t0 + Duration::from_secs(60), "421 from a rule")
    );
    other.resume();
    assert!(d.suspended_until(t0).is_none());
}

#[test]
fn a_reduction_is_shared_the_deepest_wins_and_it_doubles_back() {
    let host = HostLimits::new();
    let (a, b) = (host.entry("mx:r"), host.entry("mx:r"));
    let t0 = Instant::now();
    let every = |_: usize| Some(Duration::from_secs(60));
    assert_eq!(b.reductions(t0, every), (1.0, 1.0));
    let half = Reduction {
        rule: 3,
        value: 0.5,
        since: t0,
    };
    a.reduce(true, half, t0, every);
    let (rate, conns) = b.reductions(t0, every);
    assert!((rate - 0.5).abs() < 1e-4 && conns == 1.0, "{rate} {conns}");
    // A shallower one does not replace it; a deeper one does.
    a.reduce(
        true,
        Reduction {
            value: 0.75,
            ..half
        },
        t0,
        every,
    );
    assert!((b.reductions(t0, every).0 - 0.5).abs() < 1e-4);
    a.reduce(
        true,
        Reduction {
            value: 0.25,
            ..half
        },
        t0,
        every,
    );
    assert!((b.reductions(t0, every).0 - 0.25).abs() < 1e-4);
    // It doubles back every minute, and a rule no longer known ends it.
    let later = t0 + Duration::from_secs(61);
    assert!((b.reductions(later, every).0 - 0.5).abs() < 1e-3);
    assert_eq!(b.reductions(later + Duration::from_secs(120), every).0, 1.0);
    assert_eq!(b.reductions(t0, |_| None).0, 1.0);
}

#[test]
fn unused_destinations_are_forgotten_once_nothing_is_in_force() {
    let host = HostLimits::new();
    let t0 = Instant::now();
    {
        let d = host.entry("mx:c");
        d.take_message(t0, rate(1, 3600)).unwrap();
        let e = host.entry("mx:e");
        assert!(e.try_lease(1));
        host.entry("mx:d");
    }
    host.prune(t0);
    // mx:c still owes its rate and mx:e holds a lease; mx:d is gone.
    assert_eq!(host.len(), 2);
    host.entry("mx:e").release();
    host.prune(t0 + Duration::from_secs(3601));
    assert!(host.is_empty());
}

#[test]
fn an_idle_connection_yields_to_another_shard_or_to_a_node_below_its_share_only() {
    let within = Duration::from_millis(200);
    let t0 = Instant::now();
    // One host: a shard's own refusal is not contention; another shard's is.
    let host = HostLimits::new();
    let d = host.entry("mx:a");
    assert!(d.try_lease(1));
    let mine = d.refused(t0);
    assert!(!d.contended(t0, within, mine), "its own refusal");
    assert!(d.contended(t0, within, 0), "another shard's refusal");
    let theirs = d.refused(t0 + Duration::from_millis(1));
    assert!(d.contended(t0 + Duration::from_millis(1), within, mine));
    assert!(
        !d.contended(t0 + Duration::from_secs(1), within, theirs - 1),
        "too long ago"
    );
    // A cluster of two, limit 4: another node's wait counts only above the fair share of 2.
    let (tx, _rx) = std::sync::mpsc::channel();
    let link = Arc::new(crate::queue::ClusterLink::new(tx));
    link.set_nodes(2);
    let host = HostLimits::with_cluster(link);
    let d = host.entry("mx:b");
    assert!(!d.try_lease(4));
    d.set_cluster_cap(4);
    assert!(d.try_lease(4) && d.try_lease(4));
    d.wanted_elsewhere(t0);
    assert!(!d.contended(t0, within, 0), "2 held: the share");
    assert!(d.try_lease(4));
    assert!(d.contended(t0, within, 0), "3 held: above the share");
}
