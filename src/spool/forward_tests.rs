//! Tests of copy-forward through the live spool and recovery: a long-lived message moves to
//! a new segment and its old segments go; recovery re-homes or adopts a moved message
//! whatever became of its old segment.
//!
//! What it does not test: the choice of what to copy (`forward.rs` tests) and the framing
//! (`format.rs` tests). Every test works in its own temp dir.

use super::format;
use super::tests::{
    BOUNCED, DEFERRED, DELIVERED, cfg, m, msg, queued_ids, run, s, state, write_segment,
};
use super::*;

#[test]
fn a_long_lived_message_is_copied_forward_and_its_old_segments_go() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path());
    c.segment_size = 700;
    let first_segment = run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        spool.append_message(&msg(1, 3)).await.unwrap();
        let first = spool.segments()[0];
        spool.append_state(&state(1, 0, DELIVERED)).await.unwrap();
        spool.append_state(&state(1, 1, DEFERRED)).await.unwrap();
        for i in 2..80u64 {
            spool.append_message(&msg(i, 1)).await.unwrap();
            spool.append_state(&state(i, 0, DELIVERED)).await.unwrap();
        }
        // Message 1 was re-homed: its first segment is gone, the body reads back.
        assert!(!spool.segments().contains(&first), "{:?}", spool.segments());
        let back = spool.read_message(QueueId(1)).await.unwrap();
        assert_eq!(back, msg(1, 3));
        let t = spool.counts().totals;
        assert_eq!((t.accepted, t.delivered, t.queued()), (81, 79, 2));
        // A crash: no close.
        first
    });
    run(async {
        let (spool, rec) = Spool::open(c.clone()).await.unwrap();
        assert!(
            !tmp.path()
                .join("shard-0")
                .join(segment_file_name(first_segment))
                .exists()
        );
        assert_eq!(queued_ids(&rec.messages), vec![1]);
        let m = &rec.messages[0];
        assert_eq!(m.message, msg(1, 3));
        assert!(
            matches!(
                m.states.as_slice(),
                [Some(RecipientState::Delivered { .. }), Some(DEFERRED), None]
            ),
            "{:?}",
            m.states
        );
        let life = rec.stats.lifetime();
        assert_eq!((life.accepted, life.delivered, life.queued()), (81, 79, 2));
        assert_eq!(spool.counts().totals, life);
        spool.append_state(&state(1, 1, BOUNCED)).await.unwrap();
        spool.append_state(&state(1, 2, DELIVERED)).await.unwrap();
        spool.close().await.unwrap();
    });
    run(async {
        let (spool, rec) = Spool::open(c).await.unwrap();
        assert!(rec.messages.is_empty());
        let life = rec.stats.lifetime();
        assert_eq!(
            life,
            Totals {
                accepted: 81,
                delivered: 80,
                bounced: 1,
                expired: 0
            }
        );
        assert_eq!(spool.segments().len(), 1, "only the fresh segment remains");
        spool.close().await.unwrap();
    });
    assert_eq!(
        read_offline(tmp.path()).unwrap().stats.lifetime().accepted,
        81
    );
}

fn mv(id: u64, r: usize) -> (u8, Vec<u8>) {
    (
        format::KIND_MOVE,
        format::encode_message(&msg(id, r)).unwrap().to_vec(),
    )
}

#[test]
fn recovery_re_homes_a_moved_message_whose_old_segment_is_still_there() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("shard-0");
    write_segment(&shard, 0, 1, &[m(1, 2), m(2, 1)]);
    write_segment(&shard, 0, 2, &[s(2, 0, DELIVERED), s(1, 0, DELIVERED)]);
    // The move of message 1, with its final state copied, and its old segment not yet gone.
    write_segment(&shard, 0, 3, &[mv(1, 2), s(1, 0, DELIVERED)]);
    run(async {
        let (spool, rec) = Spool::open(cfg(tmp.path())).await.unwrap();
        assert_eq!(queued_ids(&rec.messages), vec![1]);
        assert_eq!(rec.messages[0].segment, 3);
        assert_eq!(rec.messages[0].states, vec![Some(DELIVERED), None]);
        let t = spool.counts().totals;
        assert_eq!((t.accepted, t.delivered, t.queued()), (3, 2, 1));
        // Segment 1 has nothing open left: it goes.
        assert!(!spool.segments().contains(&1), "{:?}", spool.segments());
        assert_eq!(spool.read_message(QueueId(1)).await.unwrap(), msg(1, 2));
        spool.close().await.unwrap();
    });
    run(async {
        let (spool, rec) = Spool::open(cfg(tmp.path())).await.unwrap();
        assert_eq!(queued_ids(&rec.messages), vec![1]);
        let t = rec.stats.lifetime();
        assert_eq!((t.accepted, t.delivered, t.queued()), (3, 2, 1));
        assert_eq!(spool.counts().totals, t);
        spool.close().await.unwrap();
    });
}

#[test]
fn recovery_adopts_a_moved_message_whose_old_segment_was_retired() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("shard-0");
    // Segment 1 (message 2, delivered; message 1 moved out) was retired: its retire record
    // counts only message 2.
    let retire = RetireRecord {
        segments: vec![1],
        totals: Totals {
            accepted: 1,
            delivered: 1,
            bounced: 0,
            expired: 0,
        },
    };
    write_segment(
        &shard,
        0,
        3,
        &[
            mv(1, 2),
            s(1, 0, DELIVERED),
            (
                format::KIND_RETIRE,
                format::encode_retire(&retire).unwrap().to_vec(),
            ),
        ],
    );
    run(async {
        let (spool, rec) = Spool::open(cfg(tmp.path())).await.unwrap();
        assert_eq!(queued_ids(&rec.messages), vec![1]);
        assert_eq!(rec.messages[0].states, vec![Some(DELIVERED), None]);
        let t = rec.stats.lifetime();
        assert_eq!((t.accepted, t.delivered, t.queued()), (3, 2, 1));
        assert_eq!(spool.counts().totals, t);
        spool.close().await.unwrap();
    });
}
