//! Delivery limits hold for the whole host, not per shard: with two shards, a destination's
//! `max_connections` and message rate are what a scripted receiver sees in all.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::receiver::Scripted;
use common::{Mta, submit, tempdir, write_config};

#[test]
fn connection_limit_and_rate_hold_across_two_shards() {
    let dir = tempdir();
    let rx = Scripted::start(false, 0);
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\n[[routes]]\ndomain = \"h.test\"\nhosts = [\"127.0.0.1:{}\"]\n\
             max_connections = 2\nrate = \"50/s\"\n",
            rx.port
        ),
    );
    let mut mta = Mta::start(dir.path(), &config);
    // One connection per message: the kernel spreads them over both shards.
    const N: usize = 160;
    for i in 0..N {
        submit(&mta, &[&format!("u{i}@h.test")], "limits");
    }
    let got = rx.wait_for(N, Duration::from_secs(60));
    assert_eq!(got.len(), N, "not every message arrived");
    assert!(mta.stop().success());

    let open = rx.max_open.load(Ordering::SeqCst);
    assert!(
        open <= 2,
        "{open} connections at once for max_connections = 2"
    );
    // 50/s with a burst of 50: by any arrival, at most 50 + 50 per second since the first
    // (plus one for the clocks of two processes).
    let mut times: Vec<_> = got.iter().map(|r| r.at).collect();
    times.sort();
    let first = times[0];
    for (i, t) in times.iter().enumerate() {
        let allowed = 50.0 + 50.0 * t.duration_since(first).as_secs_f64() + 1.0;
        assert!(
            (i + 1) as f64 <= allowed,
            "{} messages within {:?} of the first, at 50/s",
            i + 1,
            t.duration_since(first)
        );
    }
}

#[test]
fn a_shard_refused_a_lease_sends_once_another_shard_lets_go() {
    let dir = tempdir();
    let rx = Scripted::start(false, 0);
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\nmax_messages_per_connection = 5\n\
             [[routes]]\ndomain = \"one.test\"\nhosts = [\"127.0.0.1:{}\"]\nmax_connections = 1\n",
            rx.port
        ),
    );
    let mut mta = Mta::start(dir.path(), &config);
    const N: usize = 60;
    for i in 0..N {
        submit(&mta, &[&format!("u{i}@one.test")], "one");
    }
    let got = rx.wait_for(N, Duration::from_secs(30));
    assert_eq!(
        got.len(),
        N,
        "mail waits on a shard that was refused the lease"
    );
    assert!(mta.stop().success());
    assert_eq!(rx.max_open.load(Ordering::SeqCst), 1);
}

#[test]
fn the_per_address_limit_holds_across_shards() {
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        "[relay]\ntrusted_networks = []\n[smtp]\nmax_connections_per_ip = 3\n",
    );
    let mta = Mta::start(dir.path(), &config);
    // Twelve connections from one address, spread by the kernel over both shards: three are
    // greeted, the others refused, whichever shard took them.
    let mut greeted = Vec::new();
    let mut refused = 0;
    for _ in 0..12 {
        let mut c = common::Client::connect(mta.addr);
        let r = c.reply().unwrap();
        if r.starts_with("220") {
            greeted.push(c);
        } else {
            assert!(r.starts_with("421 4.7.0"), "{r}");
            refused += 1;
        }
    }
    assert_eq!((greeted.len(), refused), (3, 9));
}
