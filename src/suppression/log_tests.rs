//! Tests of the suppression log: replay, torn tails, pages and compaction.

use super::*;
use crate::suppression::record::Kind;

fn add(address: &str, expires: u64) -> Entry {
    Entry {
        op: Op::Add,
        kind: Kind::Manual,
        tenant: String::new(),
        address: address.to_owned(),
        reason: "test".to_owned(),
        by: "127.0.0.1 network".to_owned(),
        at: 1_000,
        expires,
    }
}

fn remove(address: &str) -> Entry {
    Entry {
        op: Op::Remove,
        ..add(address, 0)
    }
}

fn write(log: &mut Log, table: &Table, keyer: &Keyer, entries: &[Entry]) {
    let mut buf = Vec::new();
    let mut rel = Vec::new();
    for e in entries {
        rel.push(buf.len() as u64);
        record::encode(e, &mut buf);
    }
    let base = log.append(&buf).unwrap();
    for (e, r) in entries.iter().zip(rel) {
        let (key, meta) = meta_of(keyer, e, base + r);
        match e.op {
            Op::Add => {
                table.insert(key, meta);
            }
            Op::Remove => {
                table.remove(key);
            }
        }
    }
}

fn listed(log: &Log, table: &Table, keyer: &Keyer, now: u64) -> Vec<String> {
    let page = log.page((table, keyer), 0, 1000, now, |_| true).unwrap();
    assert!(page.next.is_none());
    page.entries.into_iter().map(|e| e.address).collect()
}

#[test]
fn replay_rebuilds_the_list_and_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let keyer = Keyer::new();
    let table = Table::new();
    let (mut log, loaded) = Log::open(dir.path(), &table, &keyer, 2_000).unwrap();
    assert_eq!(loaded, Loaded::default());
    write(
        &mut log,
        &table,
        &keyer,
        &[
            add("a@x", 0),
            add("b@x", 0),
            add("c@x", 1_500),
            remove("b@x"),
            add("a@x", 0),
        ],
    );
    let size = log.len();
    drop(log);
    // A torn append: half a record at the end.
    let mut half = Vec::new();
    record::encode(&add("d@x", 0), &mut half);
    let f = OpenOptions::new()
        .append(true)
        .open(dir.path().join(FILE))
        .unwrap();
    f.write_all_at(&half[..half.len() / 2], size).unwrap();
    drop(f);

    let table = Table::new();
    let (log, loaded) = Log::open(dir.path(), &table, &keyer, 2_000).unwrap();
    assert_eq!(loaded.records, 5);
    assert_eq!(loaded.truncated, half.len() as u64 / 2);
    assert_eq!(log.len(), size);
    // c@x expired at 1500; a@x listed once (its second record).
    assert_eq!(listed(&log, &table, &keyer, 2_000), vec!["a@x"]);
    assert_eq!(table.len(), 1);
}

#[test]
fn a_file_that_is_not_a_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE), b"something else entirely").unwrap();
    let r = Log::open(dir.path(), &Table::new(), &Keyer::new(), 0);
    assert!(r.is_err());
}

#[test]
fn pages_resume_where_they_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let keyer = Keyer::new();
    let table = Table::new();
    let (mut log, _) = Log::open(dir.path(), &table, &keyer, 0).unwrap();
    let entries: Vec<Entry> = (0..25).map(|i| add(&format!("u{i}@x"), 0)).collect();
    write(&mut log, &table, &keyer, &entries);
    let (mut from, mut seen) = (0, Vec::new());
    loop {
        let page = log.page((&table, &keyer), from, 10, 0, |_| true).unwrap();
        seen.extend(page.entries.into_iter().map(|e| e.address));
        match page.next {
            Some(n) => from = n,
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("u{i}@x")).collect();
    assert_eq!(seen, want);
    let filtered = log
        .page((&table, &keyer), 0, 100, 0, |e| e.address.starts_with("u1"))
        .unwrap();
    assert_eq!(filtered.entries.len(), 11);
}

#[test]
fn compaction_keeps_the_live_entries_only() {
    let dir = tempfile::tempdir().unwrap();
    let keyer = Keyer::new();
    let table = Table::new();
    let (mut log, _) = Log::open(dir.path(), &table, &keyer, 0).unwrap();
    for round in 0..10 {
        let batch: Vec<Entry> = (0..100)
            .map(|i| match (i + round) % 3 {
                0 => remove(&format!("u{i}@x")),
                _ => add(&format!("u{i}@x"), 0),
            })
            .collect();
        write(&mut log, &table, &keyer, &batch);
    }
    let before = listed(&log, &table, &keyer, 0);
    let size = log.len();
    log.compact(&table, &keyer, 0, None).unwrap();
    assert!(log.len() < size / 5, "{} of {size}", log.len());
    assert_eq!(log.generation, 1);
    assert_eq!(listed(&log, &table, &keyer, 0), before);
    // Appends after a compaction, and a restart, see the same list.
    write(&mut log, &table, &keyer, &[add("new@x", 0)]);
    let after = listed(&log, &table, &keyer, 0);
    assert_eq!(after.len(), before.len() + 1);
    let t2 = Table::new();
    let (log2, loaded) = Log::open(dir.path(), &t2, &keyer, 0).unwrap();
    assert_eq!(loaded.truncated, 0);
    assert_eq!(listed(&log2, &t2, &keyer, 0), after);
}

#[test]
fn compaction_keeps_every_record_after_the_publish_point() {
    let dir = tempfile::tempdir().unwrap();
    let keyer = Keyer::new();
    let table = Table::new();
    let (mut log, _) = Log::open(dir.path(), &table, &keyer, 0).unwrap();
    write(&mut log, &table, &keyer, &[add("a@x", 0), remove("a@x")]);
    write(&mut log, &table, &keyer, &[add("b@x", 0)]);
    let point = log.len();
    // After the point: a removal, an entry replaced, and one from another node.
    write(
        &mut log,
        &table,
        &keyer,
        &[remove("b@x"), add("c@x", 0), add("c@x", 5)],
    );
    let mut buf = Vec::new();
    let from_elsewhere = add("d@x", 0);
    record::encode_as(&from_elsewhere, true, &mut buf);
    let base = log.append(&buf).unwrap();
    let (key, meta) = meta_of(&keyer, &from_elsewhere, base);
    table.insert(key, meta);
    let before = listed(&log, &table, &keyer, 0);
    let (local, end) = log.local_since(point, 100).unwrap();
    assert_eq!(local.len(), 3, "{local:?}");
    assert_eq!(end, log.len());

    let kept_at = log
        .compact(&table, &keyer, 0, Some(point))
        .unwrap()
        .unwrap();
    // Nothing was live before the point but b, which the tail removes: the tail comes first.
    assert_eq!(kept_at, log.start());
    assert_eq!(listed(&log, &table, &keyer, 0), before);
    let (again, _) = log.local_since(kept_at, 100).unwrap();
    assert_eq!(
        again, local,
        "the unpublished changes, removal included, are kept"
    );
    // The expiry of the latest c is the one the table holds.
    let c = table.get(keyer.key("", "c@x")).unwrap();
    assert_eq!(c.expires(), 5);
    assert_eq!(log.entry_at(c.offset()).unwrap().unwrap().expires, 5);
    // A restart replays the same list.
    let t2 = Table::new();
    let (log2, _) = Log::open(dir.path(), &t2, &keyer, 0).unwrap();
    assert_eq!(listed(&log2, &t2, &keyer, 0), before);
}
