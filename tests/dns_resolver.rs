//! Resolver behaviour end to end against the in-process fake DNS server.
//!
//! Every test runs the resolver inside its own glommio `LocalExecutor`, talks only to a
//! `FakeDns` on 127.0.0.1 (never the machine's resolver), and is bounded by a 20 s
//! watchdog plus short per-query timeouts.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use mta::dns::fake::{FakeDns, FakeZone};
use mta::dns::{DnsConfig, DnsError, MailRoute, MxHost, Resolver};

/// Runs `f` on a fresh executor, failing the test if it takes more than 20 s.
fn run<T>(f: impl Future<Output = T>) -> T {
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("executor");
    ex.run(async move {
        glommio::timer::timeout(Duration::from_secs(20), async { Ok(f.await) })
            .await
            .expect("test exceeded its 20 s bound")
    })
}

fn cfg(fake: &FakeDns) -> DnsConfig {
    DnsConfig {
        servers: vec![fake.addr()],
        // Two tries, as in production (the default is 2): one datagram lost on a loaded
        // loopback must not fail a test about answers. Tests of silent servers and of query
        // counts set their own timeout and attempts.
        timeout: Duration::from_secs(2),
        attempts: 2,
        ..DnsConfig::default()
    }
}

fn resolver(fake: &FakeDns) -> Resolver {
    Resolver::with_seed(cfg(fake), 42).unwrap()
}

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

fn ip4(last: u8) -> IpAddr {
    IpAddr::V4(v4(last))
}

fn host(name: &str, preference: u16, addrs: Vec<IpAddr>) -> MxHost {
    MxHost {
        name: name.into(),
        preference,
        addrs,
    }
}

fn hosts(route: MailRoute) -> Vec<MxHost> {
    match route {
        MailRoute::Hosts(h) => h,
        MailRoute::NullMx => panic!("unexpected null MX"),
    }
}

#[test]
fn mx_ordered_by_preference_with_a_before_aaaa() {
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let fake = FakeDns::start(
        FakeZone::default()
            .mx("example.com", 20, "mx2.example.com")
            .mx("example.com", 10, "mx1.example.com")
            .aaaa("mx1.example.com", v6)
            .a("mx1.example.com", v4(1))
            .a("mx2.example.com", v4(2)),
    )
    .unwrap();
    let r = resolver(&fake);
    let route = run(r.mail_route("Example.COM.")).unwrap();
    assert_eq!(
        route,
        MailRoute::Hosts(vec![
            host("mx1.example.com", 10, vec![ip4(1), IpAddr::V6(v6)]),
            host("mx2.example.com", 20, vec![ip4(2)]),
        ])
    );
}

#[test]
fn equal_preferences_are_shuffled() {
    let zone = FakeZone::default()
        .mx("example.com", 10, "a.example.com")
        .mx("example.com", 10, "b.example.com")
        .mx("example.com", 10, "c.example.com")
        .mx("example.com", 5, "first.example.com")
        .a("a.example.com", v4(1))
        .a("b.example.com", v4(2))
        .a("c.example.com", v4(3))
        .a("first.example.com", v4(4));
    let fake = FakeDns::start(zone).unwrap();
    let mut orders = std::collections::HashSet::new();
    for seed in 0..12 {
        let r = Resolver::with_seed(cfg(&fake), seed).unwrap();
        let h = hosts(run(r.mail_route("example.com")).unwrap());
        assert_eq!(h.len(), 4);
        assert_eq!(h[0].name, "first.example.com");
        assert!(h[1..].iter().all(|h| h.preference == 10));
        orders.insert(
            h[1..]
                .iter()
                .map(|h| h.name.clone())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    assert!(
        orders.len() >= 2,
        "equal preferences never shuffled: {orders:?}"
    );
}

#[test]
fn implicit_mx_when_no_mx_records() {
    let fake = FakeDns::start(FakeZone::default().a("plain.example", v4(7))).unwrap();
    let r = resolver(&fake);
    let route = run(r.mail_route("plain.example")).unwrap();
    assert_eq!(
        route,
        MailRoute::Hosts(vec![host("plain.example", 0, vec![ip4(7)])])
    );
}

#[test]
fn null_mx_and_mixed_null_mx() {
    let fake = FakeDns::start(
        FakeZone::default()
            .mx("nomail.example", 0, ".")
            .mx("mixed.example", 0, ".")
            .mx("mixed.example", 10, "mx.mixed.example")
            .a("mx.mixed.example", v4(9)),
    )
    .unwrap();
    let r = resolver(&fake);
    assert_eq!(run(r.mail_route("nomail.example")), Ok(MailRoute::NullMx));
    assert_eq!(
        run(r.mail_route("mixed.example")),
        Ok(MailRoute::Hosts(vec![host(
            "mx.mixed.example",
            10,
            vec![ip4(9)]
        )]))
    );
}

#[test]
fn nxdomain_is_permanent_not_found() {
    let fake = FakeDns::start(FakeZone::default()).unwrap();
    let r = resolver(&fake);
    let err = run(r.mail_route("missing.example")).unwrap_err();
    assert_eq!(err, DnsError::NotFound("missing.example".into()));
    assert!(err.is_permanent());
    let err = run(r.host_addrs("missing.example")).unwrap_err();
    assert!(err.is_permanent());
}

#[test]
fn servfail_is_temporary_and_next_server_is_tried() {
    let bad = FakeDns::start(
        FakeZone::default()
            .servfail("example.com")
            .servfail("mx.example.com"),
    )
    .unwrap();
    let r = resolver(&bad);
    let err = run(r.mail_route("example.com")).unwrap_err();
    assert!(matches!(err, DnsError::Temporary { .. }), "{err:?}");
    assert!(!err.is_permanent());

    let good = FakeDns::start(
        FakeZone::default()
            .mx("example.com", 10, "mx.example.com")
            .a("mx.example.com", v4(1)),
    )
    .unwrap();
    let both = DnsConfig {
        servers: vec![bad.addr(), good.addr()],
        ..cfg(&bad)
    };
    let r = Resolver::with_seed(both, 1).unwrap();
    let h = hosts(run(r.mail_route("example.com")).unwrap());
    assert_eq!(h, vec![host("mx.example.com", 10, vec![ip4(1)])]);
    assert_eq!(
        r.stats().queries_sent,
        6,
        "each question asked of both servers"
    );
}

#[test]
fn timeout_is_temporary_and_bounded() {
    let fake = FakeDns::start(FakeZone::default().timeout("slow.example")).unwrap();
    let config = DnsConfig {
        timeout: Duration::from_millis(200),
        attempts: 2,
        ..cfg(&fake)
    };
    let r = Resolver::with_seed(config, 1).unwrap();
    let t0 = Instant::now();
    let err = run(r.mail_route("slow.example")).unwrap_err();
    let elapsed = t0.elapsed();
    assert!(matches!(&err, DnsError::Temporary { reason, .. } if reason.contains("timed out")));
    assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(r.stats().timeouts, 2);
    assert_eq!(fake.queries(), 0);
}

#[test]
fn truncated_udp_answer_is_retried_over_tcp() {
    let fake = FakeDns::start(
        FakeZone::default()
            .mx("big.example", 10, "mx.big.example")
            .truncate_udp("big.example")
            .a("mx.big.example", v4(3)),
    )
    .unwrap();
    let r = resolver(&fake);
    let h = hosts(run(r.mail_route("big.example")).unwrap());
    assert_eq!(h, vec![host("mx.big.example", 10, vec![ip4(3)])]);
    assert_eq!(r.stats().tcp_fallbacks, 1);
}

#[test]
fn oversized_answer_falls_back_to_tcp() {
    let mut zone = FakeZone::default();
    for i in 0..120u8 {
        zone = zone.a("many.example", Ipv4Addr::new(198, 51, 100, i));
    }
    let fake = FakeDns::start(zone).unwrap();
    let r = resolver(&fake);
    let addrs = run(r.host_addrs("many.example")).unwrap();
    assert_eq!(addrs.len(), 120);
    assert_eq!(r.stats().tcp_fallbacks, 1);
}

#[test]
fn cname_chain_in_answer_and_requery() {
    let zone = FakeZone::default()
        .cname("alias.example", "alias2.example")
        .cname("alias2.example", "real.example")
        .mx("real.example", 10, "mxalias.example")
        .cname("mxalias.example", "mx.real.example")
        .a("mx.real.example", v4(5));
    let chased = FakeDns::start(zone.clone()).unwrap();
    let r = resolver(&chased);
    let expect = vec![host("mxalias.example", 10, vec![ip4(5)])];
    assert_eq!(hosts(run(r.mail_route("alias.example")).unwrap()), expect);

    // The server answers only the first CNAME: the resolver re-queries each target.
    let unchased = FakeDns::start(zone.no_chase()).unwrap();
    let r = resolver(&unchased);
    assert_eq!(hosts(run(r.mail_route("alias.example")).unwrap()), expect);
    // MX: alias, alias2, real; A: mxalias, mx.real; AAAA: mxalias, mx.real.
    assert_eq!(unchased.queries(), 7);
}

#[test]
fn cname_loop_is_temporary() {
    let fake = FakeDns::start(
        FakeZone::default()
            .cname("loop1.example", "loop2.example")
            .cname("loop2.example", "loop1.example")
            .no_chase(),
    )
    .unwrap();
    let r = resolver(&fake);
    let err = run(r.host_addrs("loop1.example")).unwrap_err();
    assert!(matches!(&err, DnsError::Temporary { reason, .. } if reason.contains("CNAME")));
}

#[test]
fn positive_answers_are_cached() {
    let fake = FakeDns::start(
        FakeZone::default()
            .mx("example.com", 10, "mx.example.com")
            .a("mx.example.com", v4(1)),
    )
    .unwrap();
    let r = resolver(&fake);
    let first = run(r.mail_route("example.com")).unwrap();
    let sent = fake.queries();
    assert_eq!(sent, 3); // MX, A, AAAA
    let second = run(r.mail_route("EXAMPLE.com.")).unwrap();
    assert_eq!(first, second);
    assert_eq!(fake.queries(), sent, "cached lookup must not query");
    let s = r.stats();
    assert_eq!(s.cache_hits, 3);
    assert_eq!(s.queries_sent, 3);
}

#[test]
fn zero_ttl_is_not_cached_without_min_ttl() {
    let fake = FakeDns::start(FakeZone::default().ttl(0).a("short.example", v4(1))).unwrap();
    let config = DnsConfig {
        min_ttl: Duration::ZERO,
        ..cfg(&fake)
    };
    let r = Resolver::with_seed(config, 1).unwrap();
    run(r.host_addrs("short.example")).unwrap();
    let after_first = fake.queries();
    run(r.host_addrs("short.example")).unwrap();
    assert!(
        fake.queries() > after_first,
        "TTL 0 answer was served from cache"
    );

    // With the default min_ttl (30 s) the same answer is kept.
    let r = resolver(&fake);
    run(r.host_addrs("short.example")).unwrap();
    let after_first = fake.queries();
    run(r.host_addrs("short.example")).unwrap();
    assert_eq!(fake.queries(), after_first);
}

#[test]
fn negative_answers_are_cached() {
    let fake = FakeDns::start(FakeZone::default().a("nomx.example", v4(1))).unwrap();
    let r = resolver(&fake);
    assert!(run(r.mail_route("missing.example")).is_err());
    assert_eq!(fake.queries(), 1);
    assert!(run(r.mail_route("missing.example")).is_err());
    assert_eq!(fake.queries(), 1, "NXDOMAIN must be cached");

    // NODATA for MX (implicit MX) is cached too.
    run(r.mail_route("nomx.example")).unwrap();
    let n = fake.queries();
    run(r.mail_route("nomx.example")).unwrap();
    assert_eq!(fake.queries(), n);
}

#[test]
fn mismatched_answers_are_ignored() {
    let fake = FakeDns::start(
        FakeZone::default()
            .a("decoy.example", v4(8))
            .decoys("decoy.example"),
    )
    .unwrap();
    let r = resolver(&fake);
    let addrs = run(r.host_addrs("decoy.example")).unwrap();
    assert_eq!(addrs, vec![ip4(8)]);
    assert_eq!(r.stats().timeouts, 0);
}

#[test]
fn mx_target_rules() {
    let fake = FakeDns::start(
        FakeZone::default()
            // IP-literal target ignored, the other used.
            .mx("lit.example", 5, "192.0.2.99")
            .mx("lit.example", 10, "mx.lit.example")
            .a("mx.lit.example", v4(1))
            // Only IP-literal targets: nothing usable.
            .mx("onlylit.example", 5, "192.0.2.99")
            // Every target NXDOMAIN: permanent.
            .mx("dangling.example", 10, "gone1.example")
            .mx("dangling.example", 20, "gone2.example")
            // A target failing temporarily and one NXDOMAIN: temporary.
            .mx("flaky.example", 10, "broken.example")
            .mx("flaky.example", 20, "gone1.example")
            .servfail("broken.example")
            // A failing target is dropped when another resolves.
            .mx("partial.example", 10, "broken.example")
            .mx("partial.example", 20, "mx.lit.example"),
    )
    .unwrap();
    let r = resolver(&fake);
    assert_eq!(
        hosts(run(r.mail_route("lit.example")).unwrap()),
        vec![host("mx.lit.example", 10, vec![ip4(1)])]
    );
    assert!(
        run(r.mail_route("onlylit.example"))
            .unwrap_err()
            .is_permanent()
    );
    assert_eq!(
        run(r.mail_route("dangling.example")),
        Err(DnsError::NotFound("dangling.example".into()))
    );
    let err = run(r.mail_route("flaky.example")).unwrap_err();
    assert!(matches!(err, DnsError::Temporary { .. }), "{err:?}");
    assert_eq!(
        hosts(run(r.mail_route("partial.example")).unwrap()),
        vec![host("mx.lit.example", 20, vec![ip4(1)])]
    );
}

#[test]
fn concurrent_lookups_share_one_query() {
    let fake = FakeDns::start(FakeZone::default().a("shared.example", v4(1))).unwrap();
    let r = resolver(&fake);
    let (a, b) = run(futures_lite::future::zip(
        r.host_addrs("shared.example"),
        r.host_addrs("Shared.Example."),
    ));
    assert_eq!(a.unwrap(), vec![ip4(1)]);
    assert_eq!(b.unwrap(), vec![ip4(1)]);
    assert_eq!(fake.queries(), 2, "one A and one AAAA query");
    assert_eq!(r.stats().shared_inflight, 2);
}

#[test]
fn names_literals_and_idn() {
    let fake = FakeDns::start(
        FakeZone::default()
            .mx("xn--bcher-kva.example", 10, "mx.xn--bcher-kva.example")
            .a("mx.xn--bcher-kva.example", v4(4)),
    )
    .unwrap();
    let r = resolver(&fake);
    assert_eq!(
        hosts(run(r.mail_route("bücher.example")).unwrap()),
        vec![host("mx.xn--bcher-kva.example", 10, vec![ip4(4)])]
    );
    assert_eq!(run(r.host_addrs("[192.0.2.5]")), Ok(vec![ip4(5)]));
    assert!(matches!(
        run(r.mail_route("[192.0.2.5]")),
        Err(DnsError::InvalidName(_))
    ));
    assert!(matches!(
        run(r.mail_route("bad..example")),
        Err(DnsError::InvalidName(_))
    ));
    assert_eq!(fake.queries(), 3);
}

#[test]
fn follower_survives_a_dropped_leader() {
    let fake = FakeDns::start(
        FakeZone::default()
            .timeout("slow.example")
            .a("fast.example", v4(1)),
    )
    .unwrap();
    let config = DnsConfig {
        timeout: Duration::from_millis(300),
        ..cfg(&fake)
    };
    let r = Resolver::with_seed(config, 1).unwrap();
    let (leader, follower) = run(futures_lite::future::zip(
        glommio::timer::timeout(Duration::from_millis(50), async {
            Ok(r.host_addrs("slow.example").await)
        }),
        r.host_addrs("slow.example"),
    ));
    assert!(leader.is_err(), "leader was cancelled by its timeout");
    assert!(
        matches!(follower, Err(DnsError::Temporary { .. })),
        "{follower:?}"
    );
    assert_eq!(run(r.host_addrs("fast.example")), Ok(vec![ip4(1)]));
}
