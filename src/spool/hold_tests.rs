//! Tests of hold records through the live spool and recovery: a hold survives a restart, the
//! latest hold or release wins, a hold record's segment is not deleted while the message
//! lives, and copy-forward carries the hold to the message's new home.
//!
//! What it does not test: the queue's use of holds (the integration tests). Every test works
//! in its own temp dir.

use super::tests::{DELIVERED, cfg, msg, run, state};
use super::*;

fn held(rec: &Recovered) -> Vec<(u64, bool)> {
    rec.messages
        .iter()
        .map(|m| (m.message.id, m.held))
        .collect()
}

#[test]
fn a_hold_survives_a_restart_and_the_latest_record_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        for id in 1..=3 {
            spool.append_message(&msg(id, 1)).await.unwrap();
        }
        let ids = [QueueId(1), QueueId(2), QueueId(99)];
        // An id that is not queued is skipped, not an error.
        spool.append_holds(&ids, true).await.unwrap();
        assert!(spool.is_held(QueueId(1)) && spool.is_held(QueueId(2)));
        assert!(!spool.is_held(QueueId(3)));
        // A crash: no close.
    });
    run(async {
        let (spool, rec) = Spool::open(c.clone()).await.unwrap();
        assert_eq!(held(&rec), [(1, true), (2, true), (3, false)]);
        spool.append_holds(&[QueueId(2)], false).await.unwrap();
        spool.close().await.unwrap();
    });
    run(async {
        let (spool, rec) = Spool::open(c).await.unwrap();
        assert_eq!(held(&rec), [(1, true), (2, false), (3, false)]);
        spool.close().await.unwrap();
    });
}

#[test]
fn a_hold_record_keeps_its_segment_and_moves_with_the_message() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path());
    c.segment_size = 700;
    run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        spool.append_message(&msg(1, 2)).await.unwrap();
        spool.append_state(&state(1, 0, DELIVERED)).await.unwrap();
        let first = spool.segments()[0];
        let mut held_at = None;
        // Many short-lived messages fill segments; message 1 is held midway and stays queued,
        // so copy-forward moves it to newer segments and its old ones go.
        for i in 2..120u64 {
            spool.append_message(&msg(i, 1)).await.unwrap();
            spool.append_state(&state(i, 0, DELIVERED)).await.unwrap();
            if i == 40 {
                spool.append_holds(&[QueueId(1)], true).await.unwrap();
                held_at = spool.segments().last().copied();
            }
        }
        let held_at = held_at.unwrap();
        assert!(spool.is_held(QueueId(1)));
        // Message 1 moved on: its first home and the segment of its hold record are gone.
        let now = spool.segments();
        assert!(!now.contains(&first) && !now.contains(&held_at), "{now:?}");
        // A crash: no close.
    });
    run(async {
        let (spool, rec) = Spool::open(c).await.unwrap();
        assert_eq!(held(&rec), [(1, true)]);
        let life = rec.stats.lifetime();
        assert_eq!(
            (life.accepted, life.delivered, life.queued()),
            (120, 119, 1)
        );
        spool.close().await.unwrap();
    });
}
