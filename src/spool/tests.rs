//! Tests of the spool as a whole: recovery from hand-built segments, and the live spool on a
//! glommio executor (group commit, restart, deletion, failures, accounting).
//!
//! What it does not test: the bytes-level framing (`format.rs` tests), ledger arithmetic
//! (`ledger.rs` tests), copy-forward (`forward_tests.rs`), holds (`hold_tests.rs`), commits in
//! flight (`in_flight_tests.rs`) and segments made ahead (`ahead_tests.rs`); those share these
//! helpers.
//! Every test works in its own temp dir.

use std::future::Future;
use std::path::Path;

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

/// Makes a spool under `c` that holds message 1, and closes it.
pub(super) fn spool_with_one_message(c: &SpoolConfig) {
    run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        spool.append_message(&msg(1, 1)).await.unwrap();
        spool.close().await.unwrap();
    });
}

/// Opens the spool under `c`, closes it, and returns what recovery found queued.
pub(super) fn recovered(c: &SpoolConfig) -> Vec<RecoveredMessage> {
    run(async {
        let (spool, rec) = Spool::open(c.clone()).await.unwrap();
        spool.close().await.unwrap();
        rec.messages
    })
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
    // Zeros written ahead would grow a file between two looks (`ahead_tests` has those).
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
