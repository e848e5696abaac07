//! Two commits in flight: a batch written and synced while the sync before it runs is answered
//! after it, and fails with it when that sync fails.

use std::cell::RefCell;
use std::rc::Rc;

use super::tests::{cfg, msg, queued_ids, recovered, run};
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
