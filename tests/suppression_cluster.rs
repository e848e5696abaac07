//! One suppression list across a cluster, through real components: a private `redis-server`
//! and two `mta` processes (two nodes, each with its own spool) that name it. An address
//! listed on one node (by an operator or a hard bounce) is refused at RCPT on the other, a
//! removal follows, a change made while Redis is down arrives once it is back (also when its
//! node was killed meanwhile), a node that joins later (or whose place in the stream was
//! trimmed) gets the list by reading it whole, and after Redis lost its data every node's
//! entries are in it again.

mod common;

use std::path::Path;
use std::time::Duration;

use common::receiver::Scripted;
use common::redis::Redis;
use common::{
    Client, Mta, metric, metrics_text, mta_cli, mta_cli_json, submit, tempdir, wait_until,
    write_config,
};

/// A node of the cluster `redis` (delivery on hold unless `extra` has a `[delivery]`
/// section).
fn node_with(dir: &Path, redis: &Redis, name: &str, extra: &str) -> Mta {
    std::fs::create_dir_all(dir).unwrap();
    let config = write_config(
        dir,
        "",
        &format!(
            "[cluster]\nredis = \"{}\"\nnode = \"{name}\"\ntimeout = \"300ms\"\n{extra}",
            redis.url()
        ),
    );
    Mta::start(dir, &config)
}

fn node(dir: &Path, redis: &Redis, name: &str) -> Mta {
    node_with(dir, redis, name, "")
}

fn cli(mta: &Mta, args: &[&str]) -> String {
    let (ok, out, err) = mta_cli(mta.admin.unwrap(), &mta.config, args);
    assert!(ok, "mta {args:?}: {err}");
    out
}

fn listed(mta: &Mta, address: &str) -> bool {
    let check = mta_cli_json(
        mta.admin.unwrap(),
        &mta.config,
        &["suppression", "check", address],
    );
    check["listed"] == true
}

/// The reply to RCPT TO:<rcpt> from loopback (a trusted network).
fn rcpt(mta: &Mta, rcpt: &str) -> String {
    let mut c = Client::connect(mta.addr);
    c.reply();
    c.send(b"EHLO c.test\r\n");
    c.reply();
    c.send(b"MAIL FROM:<a@src.test>\r\n");
    assert!(c.reply().unwrap().starts_with("250"));
    c.send(format!("RCPT TO:<{rcpt}>\r\n").as_bytes());
    c.reply().unwrap()
}

fn figure(mta: &Mta, name: &str) -> Option<u64> {
    metric(&metrics_text(mta.admin.unwrap()), name)
}

#[test]
fn an_address_listed_on_one_node_is_refused_on_the_other_and_a_removal_follows() {
    let dir = tempdir();
    let Some(redis) = Redis::start(&dir.path().join("redis")) else {
        return;
    };
    let a = node(&dir.path().join("a"), &redis, "a");
    let b = node(&dir.path().join("b"), &redis, "b");
    assert!(rcpt(&b, "gone@dest.test").starts_with("250"));

    let out = cli(
        &a,
        &["suppression", "add", "Gone@Dest.test", "--reason", "asked"],
    );
    assert!(out.contains("listed gone@dest.test"), "{out}");
    assert!(
        wait_until(Duration::from_secs(20), || listed(&b, "gone@dest.test")),
        "node b never listed the address node a added"
    );
    let reply = rcpt(&b, "gone@dest.test");
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert!(reply.contains("suppression list (manual)"), "{reply}");
    // The entry on b is a's, reason and all.
    let page = mta_cli_json(b.admin.unwrap(), &b.config, &["suppression", "list"]);
    assert_eq!(page["listed"], 1);
    assert_eq!(page["entries"][0]["reason"], "asked");

    let out = cli(&a, &["suppression", "remove", "gone@dest.test"]);
    assert!(out.contains("removed gone@dest.test"), "{out}");
    assert!(
        wait_until(Duration::from_secs(20), || !listed(&b, "gone@dest.test")),
        "node b still lists the address node a removed"
    );
    assert!(rcpt(&b, "gone@dest.test").starts_with("250"));

    // A change made on b goes the other way too.
    cli(&b, &["suppression", "add", "other@dest.test"]);
    assert!(wait_until(Duration::from_secs(20), || listed(
        &a,
        "other@dest.test"
    )));
    assert_eq!(
        figure(&a, "mta_suppression_cluster_published_total"),
        Some(2)
    );
    assert_eq!(
        figure(&b, "mta_suppression_cluster_published_total"),
        Some(1)
    );
    assert!(figure(&b, "mta_suppression_cluster_applied_total").unwrap() >= 2);
    assert_eq!(figure(&a, "mta_suppression_cluster_degraded"), Some(0));
    // Each node's own changes come back from the stream and change nothing there.
    assert_eq!(figure(&a, "mta_suppression_cluster_applied_total"), Some(1));
}

#[test]
fn a_hard_bounce_on_one_node_suppresses_the_address_on_the_other() {
    let dir = tempdir();
    let Some(redis) = Redis::start(&dir.path().join("redis")) else {
        return;
    };
    // The scripted receiver refuses `bad...` with 550 5.1.1: a bad_mailbox bounce.
    let sink = Scripted::start(false, 0);
    let route = format!(
        "[delivery]\n[[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{0}\"]\n\
         [[routes]]\ndomain = \"src.test\"\nhosts = [\"127.0.0.1:{0}\"]\n",
        sink.port
    );
    let a = node_with(&dir.path().join("a"), &redis, "a", &route);
    let b = node(&dir.path().join("b"), &redis, "b");
    submit(&a, &["bad1@dest.test"], "news");
    assert!(
        wait_until(Duration::from_secs(30), || listed(&b, "bad1@dest.test")),
        "the hard bounce on node a never listed the address on node b"
    );
    let check = mta_cli_json(
        b.admin.unwrap(),
        &b.config,
        &["suppression", "check", "bad1@dest.test"],
    );
    assert_eq!(check["kind"], "hard_bounce");
    assert!(rcpt(&b, "bad1@dest.test").starts_with("550 5.7.1"));
}

#[test]
fn a_change_made_while_redis_is_down_arrives_when_it_is_back() {
    let dir = tempdir();
    let Some(mut redis) = Redis::start(&dir.path().join("redis")) else {
        return;
    };
    let mut a = node(&dir.path().join("a"), &redis, "a");
    let b = node(&dir.path().join("b"), &redis, "b");
    cli(&a, &["suppression", "add", "before@dest.test"]);
    assert!(wait_until(Duration::from_secs(20), || listed(
        &b,
        "before@dest.test"
    )));

    redis.kill();
    // The list still takes changes: they wait in a's log.
    cli(&a, &["suppression", "add", "during@dest.test"]);
    cli(&a, &["suppression", "remove", "before@dest.test"]);
    assert!(rcpt(&a, "during@dest.test").starts_with("550"));
    assert!(
        wait_until(Duration::from_secs(20), || figure(
            &a,
            "mta_suppression_cluster_degraded"
        ) == Some(1)),
        "node a does not say that its list cannot reach Redis"
    );
    assert!(figure(&a, "mta_suppression_cluster_unpublished_bytes").unwrap() > 0);
    assert!(!listed(&b, "during@dest.test"));

    // Redis comes back empty (no persistence): a publishes what waited, and its whole list.
    redis.restart();
    assert!(
        wait_until(Duration::from_secs(30), || listed(&b, "during@dest.test")),
        "the change made while Redis was down never reached node b"
    );
    assert!(wait_until(Duration::from_secs(20), || !listed(
        &b,
        "before@dest.test"
    )));
    assert!(rcpt(&b, "during@dest.test").starts_with("550 5.7.1"));
    assert!(wait_until(Duration::from_secs(20), || figure(
        &a,
        "mta_suppression_cluster_unpublished_bytes"
    ) == Some(0)));
    assert_eq!(figure(&a, "mta_suppression_cluster_degraded"), Some(0));
    let log = a.drain_log().join("\n");
    assert!(log.contains("publishing to the cluster failed"), "{log}");
    assert!(log.contains("publishing to the cluster restored"), "{log}");
}

#[test]
fn a_node_that_joins_later_or_falls_behind_reads_the_whole_list() {
    let dir = tempdir();
    let Some(redis) = Redis::start(&dir.path().join("redis")) else {
        return;
    };
    let a = node(&dir.path().join("a"), &redis, "a");
    let file = dir.path().join("list.txt");
    let lines: String = (0..300)
        .map(|i| format!("user{i}@dest.test,old\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let out = cli(&a, &["suppression", "import", file.to_str().unwrap()]);
    assert!(out.contains("300 addresses newly listed"), "{out}");
    cli(&a, &["suppression", "remove", "user7@dest.test"]);
    let published = || figure(&a, "mta_suppression_cluster_published_total");
    assert!(wait_until(Duration::from_secs(20), || published() == Some(301)));

    // b starts after all that: it reads the list from the hash.
    let db = dir.path().join("b");
    let mut b = node(&db, &redis, "b");
    let count = |b: &Mta| {
        mta_cli_json(
            b.admin.unwrap(),
            &b.config,
            &["suppression", "list", "--limit", "1"],
        )["listed"]
            .as_u64()
    };
    assert!(
        wait_until(Duration::from_secs(30), || count(&b) == Some(299)),
        "node b has {:?} entries, not 299",
        count(&b)
    );
    assert!(rcpt(&b, "user1@dest.test").starts_with("550 5.7.1"));
    assert!(rcpt(&b, "user7@dest.test").starts_with("250"));
    assert!(b.stop().success());

    // While b is stopped, its place in the stream is trimmed away and the list changes.
    cli(&a, &["suppression", "add", "late@dest.test"]);
    cli(&a, &["suppression", "remove", "user8@dest.test"]);
    assert!(wait_until(Duration::from_secs(20), || published() == Some(303)));
    let trimmed = redis.command("XTRIM mta:suppression MAXLEN 0").unwrap();
    assert!(trimmed.starts_with(':'), "{trimmed}");
    let mut b = Mta::start(&db, &db.join("mta.toml"));
    assert!(
        wait_until(Duration::from_secs(30), || listed(&b, "late@dest.test")
            && !listed(&b, "user8@dest.test")),
        "node b did not read the list again after its place was trimmed: {:#?}",
        b.drain_log()
    );
    assert_eq!(count(&b), Some(299));
}

#[test]
fn changes_waiting_for_redis_survive_a_kill_and_redis_losing_its_data() {
    let dir = tempdir();
    let Some(mut redis) = Redis::start(&dir.path().join("redis")) else {
        return;
    };
    let da = dir.path().join("a");
    let mut a = node(&da, &redis, "a");
    let b = node(&dir.path().join("b"), &redis, "b");
    cli(&a, &["suppression", "add", "first@dest.test"]);
    assert!(wait_until(Duration::from_secs(20), || listed(
        &b,
        "first@dest.test"
    )));

    // Redis takes no writes for a while: a's change waits in its log, then a is killed.
    let paused = redis.command("CLIENT PAUSE 30000 WRITE").unwrap();
    assert!(paused.starts_with("+OK"), "{paused}");
    cli(&a, &["suppression", "add", "waiting@dest.test"]);
    assert!(
        wait_until(Duration::from_secs(20), || figure(
            &a,
            "mta_suppression_cluster_degraded"
        ) == Some(1)),
        "node a never failed to publish"
    );
    a.kill();
    let unpaused = redis.command("CLIENT UNPAUSE").unwrap();
    assert!(unpaused.starts_with("+OK"), "{unpaused}");
    assert!(!listed(&b, "waiting@dest.test"));
    // Restarted, a publishes what waited from where its publish point says.
    let mut a = Mta::start(&da, &da.join("mta.toml"));
    assert!(
        wait_until(Duration::from_secs(30), || listed(&b, "waiting@dest.test")),
        "the change that waited when node a was killed never reached node b"
    );

    // Redis loses everything while a is stopped; b, still running, lists one more address
    // (and publishes its own changes again); a connects after that and does the same.
    assert!(a.stop().success());
    redis.kill();
    redis.restart();
    cli(&b, &["suppression", "add", "from-b@dest.test"]);
    let a = Mta::start(&da, &da.join("mta.toml"));
    // A node that joins now gets every node's entries from Redis.
    let c = node(&dir.path().join("c"), &redis, "c");
    assert!(
        wait_until(Duration::from_secs(30), || {
            ["first@dest.test", "waiting@dest.test", "from-b@dest.test"]
                .iter()
                .all(|x| listed(&c, x))
        }),
        "node c did not get the whole list after Redis lost its data"
    );
    assert!(listed(&a, "from-b@dest.test"));
}
