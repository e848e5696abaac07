//! Tests of the spool as a whole: recovery from hand-built segments, and the live spool on a
//! glommio executor (group commit, restart, deletion, failures, accounting).
//!
//! What it does not test: the bytes-level framing (`format.rs` tests), ledger arithmetic
//! (`ledger.rs` tests) and copy-forward (`forward_tests.rs`, which shares these helpers).
//! Every test works in its own temp dir.

use std::cell::RefCell;
use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};

use super::format::{self, KIND_MESSAGE, KIND_STATE};
use super::*;

pub(super) fn run<T>(f: impl Future<Output = T>) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("executor")
        .run(f)
}

pub(super) fn msg(id: u64, rcpts: usize) -> MessageRecord {
    MessageRecord {
        id,
        reverse_path: "sender@example.com".into(),
        mail_params: vec![],
        recipients: (0..rcpts)
            .map(|i| Recipient::new(format!("r{i}@d{}.example", id % 7)))
            .collect(),
        arrival_unix_ms: 1_700_000_000_000,
        client_addr: "192.0.2.1:25".into(),
        helo: "client.example".into(),
        tls: None,
        auth: Some("user".into()),
        campaign: None,
        tenant: None,
        body: format!("Subject: {id}\r\n\r\nhello\r\n").into_bytes(),
        priority: 0,
    }
}

pub(super) fn state(id: u64, recipient: u32, state: RecipientState) -> StateRecord {
    StateRecord {
        id,
        recipient,
        state,
    }
}

pub(super) const DELIVERED: RecipientState = RecipientState::Delivered { at_unix_ms: 10 };
pub(super) const BOUNCED: RecipientState = RecipientState::Bounced { at_unix_ms: 11 };
pub(super) const EXPIRED: RecipientState = RecipientState::Expired { at_unix_ms: 12 };
pub(super) const DEFERRED: RecipientState = RecipientState::Deferred {
    at_unix_ms: 13,
    next_attempt_unix_ms: 14,
    attempts: 2,
};

pub(super) fn cfg(dir: &Path) -> SpoolConfig {
    SpoolConfig::new(dir.join("shard-0"), 0)
}

/// Writes a segment file by hand.
pub(super) fn write_segment(dir: &Path, shard: u32, n: u64, recs: &[(u8, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut b = format::encode_header(shard, n).to_vec();
    for (kind, p) in recs {
        format::push_frame(&mut b, *kind, p).unwrap();
    }
    std::fs::write(dir.join(segment_file_name(n)), b).unwrap();
}
pub(super) fn m(id: u64, r: usize) -> (u8, Vec<u8>) {
    (
        KIND_MESSAGE,
        format::encode_message(&msg(id, r)).unwrap().to_vec(),
    )
}
pub(super) fn s(id: u64, r: u32, st: RecipientState) -> (u8, Vec<u8>) {
    (
        KIND_STATE,
        format::encode_state(&state(id, r, st)).unwrap().to_vec(),
    )
}

pub(super) fn queued_ids(msgs: &[RecoveredMessage]) -> Vec<u64> {
    msgs.iter().map(|m| m.message.id).collect()
}

#[test]
fn state_records_give_the_queued_set() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("shard-2");
    write_segment(
        &shard,
        2,
        1,
        &[m(1, 2), m(2, 1), m(3, 3), s(1, 0, DEFERRED)],
    );
    write_segment(
        &shard,
        2,
        2,
        &[
            s(1, 0, DELIVERED),
            s(1, 1, DEFERRED),
            s(2, 0, BOUNCED),
            s(3, 2, EXPIRED),
            s(3, 2, DEFERRED),
            s(99, 0, DELIVERED),
        ],
    );
    let off = read_offline(tmp.path()).unwrap();
    assert_eq!(queued_ids(&off.messages), vec![1, 3]);
    assert_eq!(
        off.messages[0].states,
        vec![Some(DELIVERED), Some(DEFERRED)]
    );
    assert_eq!(off.messages[1].states, vec![None, None, Some(EXPIRED)]);
    assert_eq!(off.messages[1].pending_recipients().count(), 2);
    assert_eq!(off.messages[0].segment, 1);
    let st = off.stats;
    assert_eq!((st.segments, st.records, st.truncated_bytes), (2, 10, 0));
    assert_eq!(
        (st.recipients_total, st.delivered, st.bounced, st.expired),
        (6, 1, 1, 1)
    );
    assert_eq!(st.queued_recipients(), 3);
    // Read-only: nothing changed.
    assert_eq!(std::fs::read_dir(&shard).unwrap().count(), 2);
}

#[test]
fn foreign_segment_is_an_error_not_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("shard-0");
    write_segment(&shard, 5, 1, &[m(1, 1)]);
    assert!(matches!(
        read_offline(tmp.path()),
        Err(SpoolError::Corrupt { .. })
    ));
}

#[test]
fn open_deletes_fully_final_segments_and_keeps_accounting() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("shard-0");
    write_segment(&shard, 0, 1, &[m(1, 2), m(2, 1)]);
    write_segment(
        &shard,
        0,
        2,
        &[
            m(3, 1),
            s(1, 0, DELIVERED),
            s(1, 1, BOUNCED),
            s(2, 0, EXPIRED),
        ],
    );
    // Segment 3: header never reached the disk.
    std::fs::write(shard.join(segment_file_name(3)), [0u8; 10]).unwrap();
    run(async {
        let (spool, rec) = Spool::open(cfg(tmp.path())).await.unwrap();
        assert_eq!(queued_ids(&rec.messages), vec![3]);
        // Segment 1 is fully final, but segment 2 holds its final states: 1 goes, 2 stays.
        assert_eq!(spool.segments(), vec![2, 4]);
        assert!(!shard.join(segment_file_name(1)).exists());
        assert!(!shard.join(segment_file_name(3)).exists());
        let c = spool.counts();
        assert_eq!(
            c.totals,
            Totals {
                accepted: 4,
                delivered: 1,
                bounced: 1,
                expired: 1
            }
        );
        assert_eq!((c.messages, c.recipients), (1, 1));
        spool.append_state(&state(3, 0, DELIVERED)).await.unwrap();
        spool.close().await.unwrap();
    });
    run(async {
        let (spool, rec) = Spool::open(cfg(tmp.path())).await.unwrap();
        assert!(rec.messages.is_empty());
        assert_eq!(
            rec.stats.lifetime(),
            Totals {
                accepted: 4,
                delivered: 2,
                bounced: 1,
                expired: 1
            }
        );
        assert_eq!(spool.counts().totals, rec.stats.lifetime());
        // Everything old is retired: only the fresh segment remains.
        assert_eq!(spool.segments(), vec![5]);
        spool.close().await.unwrap();
    });
    let names: Vec<_> = std::fs::read_dir(&shard)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(
        read_offline(tmp.path()).unwrap().stats.lifetime().accepted,
        4
    );
}

#[test]
fn concurrent_appenders_share_fdatasyncs() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let (spool, _) = Spool::open(cfg(tmp.path())).await.unwrap();
        let base = spool.stats().commits;
        let n = 64u64;
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let sp = spool.clone();
                glommio::spawn_local(async move { sp.append_message(&msg(1000 + i, 2)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let syncs = spool.stats().commits - base;
        assert!(syncs <= 4, "{n} appends took {syncs} fdatasyncs");
        assert_eq!(spool.counts().messages, n);
        // 200 appenders x 5 appends each.
        let base = spool.stats().commits;
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let sp = spool.clone();
                glommio::spawn_local(async move {
                    for j in 0..5 {
                        sp.append_message(&msg(10_000 + i * 10 + j, 1))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let syncs = spool.stats().commits - base;
        assert!(syncs <= 20, "1000 appends took {syncs} fdatasyncs");
        spool.close().await.unwrap();
        assert!(matches!(
            spool.append_message(&msg(1, 1)).await,
            Err(SpoolError::Closed)
        ));
    });
}

#[test]
fn restart_recovers_everything_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path());
    c.segment_size = 2048; // many segments
    let acked = run(async {
        let (spool, rec) = Spool::open(c.clone()).await.unwrap();
        assert!(rec.messages.is_empty());
        let mut acked = Vec::new();
        for i in 1..=40u64 {
            spool.append_message(&msg(i, 3)).await.unwrap();
            acked.push(i);
        }
        for i in 1..=40u64 {
            if i % 2 == 0 {
                for r in 0..3 {
                    spool.append_state(&state(i, r, DELIVERED)).await.unwrap();
                }
            } else {
                spool.append_state(&state(i, 1, DEFERRED)).await.unwrap();
            }
        }
        assert!(matches!(
            spool.append_state(&state(77, 0, DELIVERED)).await,
            Err(SpoolError::UnknownMessage(_))
        ));
        assert!(matches!(
            spool.append_state(&state(1, 3, DELIVERED)).await,
            Err(SpoolError::NoSuchRecipient { .. })
        ));
        assert!(matches!(
            spool.append_message(&msg(1, 1)).await,
            Err(SpoolError::DuplicateId(_))
        ));
        // Every segment holds an odd (still open) message; the few open messages of old
        // segments are copied forward as new segments open, and the old segments go.
        assert!(spool.stats().segments_created > 3, "{:?}", spool.stats());
        let c = spool.counts();
        assert_eq!(
            c.totals,
            Totals {
                accepted: 120,
                delivered: 60,
                bounced: 0,
                expired: 0
            }
        );
        assert_eq!(c.messages, 20);
        // No close: a crash after the last acknowledgement.
        acked
    });
    run(async {
        let (spool, rec) = Spool::open(c.clone()).await.unwrap();
        let want: Vec<u64> = acked.iter().copied().filter(|i| i % 2 == 1).collect();
        assert_eq!(queued_ids(&rec.messages), want);
        for m in &rec.messages {
            assert_eq!(m.message, msg(m.message.id, 3));
            assert_eq!(m.states, vec![None, Some(DEFERRED), None]);
        }
        let life = rec.stats.lifetime();
        assert_eq!(
            life,
            Totals {
                accepted: 120,
                delivered: 60,
                bounced: 0,
                expired: 0
            }
        );
        assert_eq!(spool.counts().totals, life);
        assert_eq!(spool.last_id(), Some(QueueId(40)));
        spool.close().await.unwrap();
    });
}

#[test]
fn final_states_pin_their_segment_until_the_message_segment_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path());
    c.segment_size = 600;
    run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        spool.append_message(&msg(1, 2)).await.unwrap(); // long-lived, segment A
        for i in 2..30u64 {
            spool.append_message(&msg(i, 1)).await.unwrap();
            spool.append_state(&state(i, 0, DELIVERED)).await.unwrap();
        }
        // Recipient 0 of message 1 is final in some later segment, recipient 1 stays open.
        spool.append_state(&state(1, 0, BOUNCED)).await.unwrap();
        for i in 30..60u64 {
            spool.append_message(&msg(i, 1)).await.unwrap();
            spool.append_state(&state(i, 0, DELIVERED)).await.unwrap();
        }
        assert!(spool.stats().segments_deleted > 3);
    });
    run(async {
        let (spool, rec) = Spool::open(c.clone()).await.unwrap();
        assert_eq!(queued_ids(&rec.messages), vec![1]);
        // The final state may have been copied forward (with a new time): compare the kind.
        assert!(
            matches!(
                rec.messages[0].states.as_slice(),
                [Some(RecipientState::Bounced { .. }), None]
            ),
            "{:?}",
            rec.messages[0].states
        );
        spool.append_state(&state(1, 1, DELIVERED)).await.unwrap();
        let t = spool.counts().totals;
        assert_eq!(
            t,
            Totals {
                accepted: 60,
                delivered: 59,
                bounced: 1,
                expired: 0
            }
        );
        spool.close().await.unwrap();
    });
    run(async {
        let (spool, rec) = Spool::open(c).await.unwrap();
        assert!(rec.messages.is_empty());
        assert_eq!(rec.stats.lifetime().queued(), 0);
        assert_eq!(spool.segments().len(), 1);
        spool.close().await.unwrap();
    });
}

#[test]
fn failed_sync_fails_the_batch_and_the_spool_continues() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let (spool, _) = Spool::open(cfg(tmp.path())).await.unwrap();
        spool.append_message(&msg(1, 1)).await.unwrap();
        let seg_before = spool.segments();
        spool.fail_next_syncs(1);
        let tasks: Vec<_> = (2..10u64)
            .map(|i| {
                let sp = spool.clone();
                glommio::spawn_local(async move { sp.append_message(&msg(i, 1)).await })
            })
            .collect();
        let mut failed = 0;
        for t in tasks {
            if let Err(e) = t.await {
                assert!(matches!(e, SpoolError::Io(_)));
                failed += 1;
            }
        }
        assert!(failed >= 1);
        assert_eq!(spool.stats().failed_batches, 1);
        spool.append_message(&msg(100, 1)).await.unwrap();
        let seg_after = spool.segments();
        assert_ne!(
            seg_before.last(),
            seg_after.last(),
            "a new segment after the failure"
        );
        spool.close().await.unwrap();
    });
    run(async {
        let (spool, rec) = Spool::open(cfg(tmp.path())).await.unwrap();
        let ids = queued_ids(&rec.messages);
        // Acknowledged ones are there; failed ones may be too (at-least-once).
        assert!(ids.contains(&1) && ids.contains(&100), "{ids:?}");
        spool.close().await.unwrap();
    });
}

#[test]
fn a_batch_synced_beside_a_failing_one_fails_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let (spool, _) = Spool::open(cfg(tmp.path())).await.unwrap();
        spool.append_message(&msg(1, 1)).await.unwrap();
        let seg_before = spool.segments();
        spool.next_sync_late(true);
        let append = |i: u64| {
            let sp = spool.clone();
            glommio::spawn_local(async move { sp.append_message(&msg(i, 1)).await })
        };
        // Message 2's sync runs (and will fail) while 3..10 are written and synced beside it.
        let first = append(2);
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        let followers: Vec<_> = (3..10u64).map(append).collect();
        assert!(matches!(first.await, Err(SpoolError::Io(_))));
        for t in followers {
            assert!(matches!(t.await, Err(SpoolError::Io(_))));
        }
        assert_eq!(spool.stats().failed_batches, 2);
        spool.append_message(&msg(100, 1)).await.unwrap();
        assert_ne!(seg_before.last(), spool.segments().last());
        spool.close().await.unwrap();
    });
    run(async {
        let (spool, rec) = Spool::open(cfg(tmp.path())).await.unwrap();
        let ids = queued_ids(&rec.messages);
        assert!(ids.contains(&1) && ids.contains(&100), "{ids:?}");
        spool.close().await.unwrap();
    });
}

#[test]
fn a_batch_synced_beside_a_slow_one_waits_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let (spool, _) = Spool::open(cfg(tmp.path())).await.unwrap();
        spool.next_sync_late(false);
        let done = Rc::new(RefCell::new(Vec::new()));
        let append = |i: u64| {
            let (sp, done) = (spool.clone(), done.clone());
            glommio::spawn_local(async move {
                sp.append_message(&msg(i, 1)).await.unwrap();
                done.borrow_mut().push(i);
            })
        };
        let first = append(1);
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        let second = append(2);
        second.await;
        first.await;
        // Written and synced while the first batch's sync ran, answered after it.
        assert_eq!(*done.borrow(), vec![1, 2]);
        assert_eq!(spool.stats().batches, 2);
        spool.close().await.unwrap();
    });
    run(async {
        let (spool, rec) = Spool::open(cfg(tmp.path())).await.unwrap();
        assert_eq!(queued_ids(&rec.messages).len(), 2);
        spool.close().await.unwrap();
    });
}

#[test]
fn the_next_segment_is_made_ahead_and_an_unused_one_goes_at_close() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path());
    c.segment_size = 2000;
    let files = |dir: &Path| -> Vec<u64> {
        let mut n: Vec<u64> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                u64::from_str_radix(name.strip_suffix(".seg")?, 16).ok()
            })
            .collect();
        n.sort_unstable();
        n
    };
    run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        let first = spool.segments();
        let mut i = 1;
        // Past three quarters of the segment: the next file appears before any roll.
        while files(&c.dir).len() == first.len() && i < 100 {
            spool.append_message(&msg(i, 1)).await.unwrap();
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            i += 1;
        }
        assert_eq!(spool.segments(), first, "no roll yet");
        let ahead = *files(&c.dir).last().unwrap();
        assert!(ahead > *first.last().unwrap());
        // The roll uses it.
        while !spool.segments().contains(&ahead) && i < 200 {
            spool.append_message(&msg(i, 1)).await.unwrap();
            i += 1;
        }
        assert!(spool.segments().contains(&ahead));
        assert_eq!(spool.disk_bytes(), {
            let d = &c.dir;
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum::<u64>()
        });
        // Fill the current one past three quarters too: its successor is made, never used,
        // and removed at close.
        let (unused, in_use) = loop {
            spool.append_message(&msg(i, 1)).await.unwrap();
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            i += 1;
            let (on_disk, in_use) = (files(&c.dir), spool.segments());
            let extra = on_disk.last().filter(|n| !in_use.contains(n)).copied();
            if let Some(n) = extra.filter(|n| *n > ahead) {
                break (n, in_use);
            }
            assert!(i < 400, "no segment made ahead: {on_disk:?} {in_use:?}");
        };
        spool.close().await.unwrap();
        let after = files(&c.dir);
        assert!(
            !after.contains(&unused),
            "the unused segment is gone: {after:?}"
        );
        assert!(
            after.iter().all(|n| in_use.contains(n)),
            "{after:?} {in_use:?}"
        );
    });
    run(async {
        let (spool, rec) = Spool::open(c.clone()).await.unwrap();
        assert!(!rec.messages.is_empty());
        spool.close().await.unwrap();
    });
}

#[test]
fn a_segment_made_ahead_and_left_by_a_crash_is_retired_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        spool.append_message(&msg(1, 1)).await.unwrap();
        spool.close().await.unwrap();
    });
    // What a crash leaves when the next segment was made ahead: its header, nothing else.
    let left = c.dir.join(segment_file_name(7));
    std::fs::write(&left, format::encode_header(0, 7)).unwrap();
    run(async {
        let (spool, rec) = Spool::open(c.clone()).await.unwrap();
        assert_eq!(queued_ids(&rec.messages), vec![1]);
        assert!(!spool.segments().contains(&7));
        spool.append_message(&msg(2, 1)).await.unwrap();
        spool.close().await.unwrap();
    });
    assert!(!left.exists(), "the empty segment was retired");
    run(async {
        let (spool, rec) = Spool::open(c.clone()).await.unwrap();
        assert_eq!(queued_ids(&rec.messages).len(), 2);
        spool.close().await.unwrap();
    });
}

#[test]
fn torn_tail_is_cut_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let (spool, _) = Spool::open(cfg(tmp.path())).await.unwrap();
        for i in 1..=3 {
            spool.append_message(&msg(i, 1)).await.unwrap();
        }
        spool.close().await.unwrap();
    });
    let shard = tmp.path().join("shard-0");
    let path = shard.join(segment_file_name(1));
    let good = std::fs::metadata(&path).unwrap().len();
    let mut torn = format::encode_message(&msg(4, 1)).unwrap().to_vec();
    torn.truncate(torn.len() / 2);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&(200u32).to_le_bytes());
    bytes.extend_from_slice(&torn);
    std::fs::write(&path, &bytes).unwrap();
    let off = read_offline(tmp.path()).unwrap();
    assert_eq!(off.stats.truncated_bytes, bytes.len() as u64 - good);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        bytes.len() as u64,
        "offline is read-only"
    );
    run(async {
        let (spool, rec) = Spool::open(cfg(tmp.path())).await.unwrap();
        assert_eq!(queued_ids(&rec.messages), vec![1, 2, 3]);
        assert_eq!(rec.stats.truncated_bytes, bytes.len() as u64 - good);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        spool.close().await.unwrap();
    });
}

#[test]
fn sync_never_still_writes_and_bad_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path());
    c.sync = SyncMode::Never;
    run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        spool.append_message(&msg(1, 1)).await.unwrap();
        assert_eq!(spool.stats().commits, 0);
        assert!(matches!(
            spool.append_message(&msg(2, 0)).await,
            Err(SpoolError::InvalidRecord(_))
        ));
        spool.close().await.unwrap();
        spool.close().await.unwrap();
    });
    assert_eq!(
        queued_ids(&read_offline(tmp.path()).unwrap().messages),
        vec![1]
    );
    let mut bad = cfg(tmp.path());
    bad.shard = 1024;
    run(async {
        assert!(matches!(
            Spool::open(bad).await,
            Err(SpoolError::InvalidConfig(_))
        ));
    });
}

#[test]
fn detached_states_go_out_with_the_next_commit_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let (spool, _) = Spool::open(cfg(tmp.path())).await.unwrap();
        spool.append_message(&msg(1, 2)).await.unwrap();
        spool
            .append_state_detached(&state(1, 0, DELIVERED))
            .unwrap();
        // Refused at once, as the awaited form refuses them.
        assert!(matches!(
            spool.append_state_detached(&state(9, 0, DELIVERED)),
            Err(SpoolError::UnknownMessage(_))
        ));
        assert!(matches!(
            spool.append_state_detached(&state(1, 5, DELIVERED)),
            Err(SpoolError::NoSuchRecipient { .. })
        ));
        // The next awaited record commits in the same or a later batch.
        spool.append_state(&state(1, 1, BOUNCED)).await.unwrap();
        let c = spool.counts();
        assert_eq!(
            (c.totals.delivered, c.totals.bounced, c.recipients),
            (1, 1, 0)
        );
        spool.close().await.unwrap();
    });
    run(async {
        let (spool, rec) = Spool::open(cfg(tmp.path())).await.unwrap();
        assert!(rec.messages.is_empty());
        assert_eq!(rec.stats.lifetime().delivered, 1);
        spool.close().await.unwrap();
    });
}

#[test]
fn disk_bytes_are_what_the_segment_files_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path());
    c.segment_size = 700;
    // Zeros written ahead would grow a file between two looks (`zero_fill_tests` has those).
    c.preallocate = false;
    let on_disk = |dir: &Path| -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        assert_eq!(spool.disk_bytes(), on_disk(&c.dir));
        for i in 1..40u64 {
            spool.append_message(&msg(i, 1)).await.unwrap();
            spool.append_state(&state(i, 0, DELIVERED)).await.unwrap();
            // Retired segments are unlinked beside the commits.
            spool.deletions_settled().await;
            assert_eq!(spool.disk_bytes(), on_disk(&c.dir), "after message {i}");
        }
        assert!(spool.stats().segments_deleted > 0, "segments were retired");
        spool.close().await.unwrap();
    });
    run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        assert_eq!(spool.disk_bytes(), on_disk(&c.dir));
        spool.close().await.unwrap();
    });
}
