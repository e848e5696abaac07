//! Two commits in flight: a batch written and synced while the sync before it runs is answered
//! after it, and fails with it when that sync fails. Delivery states alone linger for a record
//! somebody awaits instead of costing a sync of their own.

use std::cell::RefCell;
use std::rc::Rc;

use super::tests::{DEFERRED, cfg, msg, queued_ids, recovered, run, state};
use super::*;

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
    let ids = queued_ids(&recovered(&cfg(tmp.path())));
    assert!(ids.contains(&1) && ids.contains(&100), "{ids:?}");
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
    assert_eq!(recovered(&cfg(tmp.path())).len(), 2);
}

#[test]
fn delivery_states_alone_ride_with_the_next_awaited_record() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let (spool, _) = Spool::open(cfg(tmp.path())).await.unwrap();
        spool.append_message(&msg(1, 1)).await.unwrap();
        let before = spool.stats().batches;
        spool.append_state_detached(&state(1, 0, DEFERRED)).unwrap();
        // The committer runs (and, without lingering, would write the state at once).
        for _ in 0..3 {
            futures_lite::future::yield_now().await;
        }
        spool.append_message(&msg(2, 1)).await.unwrap();
        assert_eq!(
            spool.stats().batches,
            before + 1,
            "the state rode with message 2"
        );
        // Alone, a state is still committed, after the linger.
        let t = std::time::Instant::now();
        spool.append_state_detached(&state(2, 0, DEFERRED)).unwrap();
        while spool.stats().batches == before + 1 {
            assert!(t.elapsed() < std::time::Duration::from_secs(10));
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(t.elapsed() >= writer::STATE_LINGER);
        spool.close().await.unwrap();
    });
    let msgs = recovered(&cfg(tmp.path()));
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs.iter().all(|m| m.states[0] == Some(DEFERRED)),
        "both states are durable"
    );
}
