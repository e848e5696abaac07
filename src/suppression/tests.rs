//! Tests of the list as the shards use it: changes, checks, bounces, pages and restarts.

use futures_lite::future::block_on;

use super::*;

fn manual(address: &str, op: Op) -> Entry {
    Entry {
        op,
        kind: Kind::Manual,
        tenant: String::new(),
        address: normalise(address),
        reason: "asked to".into(),
        by: "127.0.0.1 network".into(),
        at: now_secs(),
        expires: 0,
    }
}

#[test]
fn changes_are_checked_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let section = SuppressionSection::default();
    let list = Suppression::open(&section, dir.path()).unwrap();
    assert_eq!(list.check("", "a@example.com"), None);
    let was = block_on(list.write(vec![
        manual("A@Example.com", Op::Add),
        manual("b@example.com", Op::Add),
        manual("b@example.com", Op::Remove),
        manual("c@example.com", Op::Remove),
    ]))
    .unwrap();
    assert_eq!(was, vec![false, false, true, false]);
    assert_eq!(list.check("", "<a@EXAMPLE.com>"), Some(Kind::Manual));
    assert_eq!(list.check("tenant1", "a@example.com"), Some(Kind::Manual));
    assert_eq!(list.check("", "b@example.com"), None);
    // A hard bounce of a configured class adds; another class does not.
    assert!(
        list.bounced("", "d@example.com", BounceClass::Quota, "452 full")
            .is_none()
    );
    let e = list
        .bounced("", "D@example.com", BounceClass::BadMailbox, "550 5.1.1 no")
        .unwrap();
    assert_eq!(
        (e.address.as_str(), e.kind),
        ("d@example.com", Kind::HardBounce)
    );
    // A page waits for the changes sent before it.
    let (page, next) = block_on(list.page(None, 10, "")).unwrap();
    assert!(next.is_none());
    let addresses: Vec<&str> = page.entries.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(addresses, vec!["a@example.com", "d@example.com"]);
    assert_eq!(list.check("", "d@example.com"), Some(Kind::HardBounce));
    // A tenant's hard bounce lists the address for that tenant only.
    let e = list
        .bounced(
            "acme",
            "e@example.com",
            BounceClass::BadMailbox,
            "550 5.1.1 no",
        )
        .unwrap();
    assert_eq!(e.tenant, "acme");
    block_on(list.page(None, 10, "")).unwrap();
    assert_eq!(list.check("acme", "e@example.com"), Some(Kind::HardBounce));
    assert_eq!(list.check("", "e@example.com"), None);
    assert_eq!(list.check("other", "e@example.com"), None);
    list.close();
    drop(list);

    let list = Suppression::open(&section, dir.path()).unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list.check("", "a@example.com"), Some(Kind::Manual));
    assert_eq!(list.check("", "d@example.com"), Some(Kind::HardBounce));
    assert_eq!(list.check("", "b@example.com"), None);
    list.close();
}

#[test]
fn tenant_entries_count_for_their_tenant_only_and_expired_ones_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let list = Suppression::open(&SuppressionSection::default(), dir.path()).unwrap();
    let mut t = manual("x@example.com", Op::Add);
    t.tenant = "acme".into();
    let mut old = manual("y@example.com", Op::Add);
    old.expires = now_secs() - 1;
    block_on(list.write(vec![t, old])).unwrap();
    assert_eq!(list.check("acme", "x@example.com"), Some(Kind::Manual));
    assert_eq!(list.check("other", "x@example.com"), None);
    assert_eq!(list.check("", "x@example.com"), None);
    assert_eq!(list.check("", "y@example.com"), None);
    list.close();
}

#[test]
fn cursors_page_through_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let list = Suppression::open(&SuppressionSection::default(), dir.path()).unwrap();
    let entries = (0..7)
        .map(|i| manual(&format!("u{i}@example.com"), Op::Add))
        .collect();
    block_on(list.write(entries)).unwrap();
    let (mut cursor, mut n) = (None, 0);
    loop {
        let (page, next) = block_on(list.page(cursor.as_deref(), 3, "example")).unwrap();
        n += page.entries.len();
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(n, 7);
    assert!(block_on(list.page(Some("nonsense"), 3, "")).is_err());
    assert!(block_on(list.page(Some("7-16"), 3, "")).is_err());
    list.close();
}

/// Applies changes from other nodes as the subscriber does; how many were written.
fn apply(list: &Suppression, entries: Vec<Entry>) -> usize {
    let entries = entries.into_iter().map(|e| (e, false)).collect();
    let (done, answer) = mpsc::channel();
    list.send(Request::Apply { entries, done }).unwrap();
    answer.recv().unwrap().unwrap()
}

#[test]
fn changes_from_other_nodes_apply_when_newer_and_are_marked_as_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let section = SuppressionSection::default();
    let list = Suppression::open(&section, dir.path()).unwrap();
    let at = |address: &str, op, at| Entry {
        at,
        ..manual(address, op)
    };
    block_on(list.write(vec![at("x@example.com", Op::Add, 100)])).unwrap();
    // Older than the entry here: nothing changes.
    assert_eq!(apply(&list, vec![at("x@example.com", Op::Remove, 50)]), 0);
    assert_eq!(list.check("", "x@example.com"), Some(Kind::Manual));
    // The same change again (its own change read back from the cluster): nothing either.
    assert_eq!(apply(&list, vec![at("x@example.com", Op::Add, 100)]), 0);
    // Read back as this node's own, it is decided without reading the log.
    let (done, answer) = mpsc::channel();
    let own = vec![(at("x@example.com", Op::Add, 100), true)];
    list.send(Request::Apply { entries: own, done }).unwrap();
    assert_eq!(answer.recv().unwrap().unwrap(), 0);
    // Newer: applied, in order; removing what is not listed writes nothing.
    let n = apply(
        &list,
        vec![
            at("x@example.com", Op::Remove, 200),
            at("y@example.com", Op::Add, 150),
            at("z@example.com", Op::Remove, 150),
        ],
    );
    assert_eq!(n, 2);
    assert_eq!(list.check("", "x@example.com"), None);
    assert_eq!(list.check("", "y@example.com"), Some(Kind::Manual));
    // An add older than the removal here does not list it again; a newer one does.
    assert_eq!(apply(&list, vec![at("x@example.com", Op::Add, 150)]), 0);
    assert_eq!(list.check("", "x@example.com"), None);
    // Within one batch each change sees the ones before it: added, then removed.
    let n = apply(
        &list,
        vec![
            at("w@example.com", Op::Add, 300),
            at("w@example.com", Op::Remove, 300),
            at("w@example.com", Op::Add, 290),
        ],
    );
    assert_eq!(n, 2);
    assert_eq!(list.check("", "w@example.com"), None);
    list.close();
    // Only the change made here is one to publish.
    let table = Table::new();
    let (log, _) =
        log::Log::open(&section.dir(dir.path()), &table, &Keyer::new(), now_secs()).unwrap();
    let (local, _) = log.local_since(0, 100).unwrap();
    assert_eq!(local.len(), 1, "{local:?}");
    assert_eq!(local[0].address, "x@example.com");
}
