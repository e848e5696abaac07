//! Segments made ahead of the roll: the next file appears before the roll and an unused one goes
//! at close; filled with zeros (`spool.preallocate`), records written over the zeros are read
//! back, the zeros are never taken for records, a roll during them loses nothing; a segment made
//! ahead and left by a crash (a header, with or without zeros) holds nothing and is retired.

use std::path::Path;
use std::time::{Duration, Instant};

use super::format::KIND_MESSAGE;
use super::recovery::segment_file_name;
use super::tests::{cfg, msg, queued_ids, recovered, run, spool_with_one_message};
use super::*;

/// A message with a body of `kib` KiB.
fn big(id: u64, kib: usize) -> MessageRecord {
    let mut m = msg(id, 1);
    m.body = format!("Subject: {id}\r\n\r\n{}\r\n", "z".repeat(kib * 1024)).into_bytes();
    m
}

/// Appends `m` and records its one recipient delivered: nothing stays to be copied forward.
async fn append(spool: &Spool, m: &MessageRecord) {
    spool.append_message(m).await.unwrap();
    let delivered = RecipientState::Delivered { at_unix_ms: 1 };
    let state = StateRecord {
        id: m.id,
        recipient: 0,
        state: delivered,
    };
    spool.append_state(&state).await.unwrap();
}

fn lengths(dir: &Path) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let n = u64::from_str_radix(name.strip_suffix(".seg")?, 16).ok()?;
            Some((n, e.metadata().unwrap().len()))
        })
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn a_segment_made_ahead_is_filled_with_zeros_then_written_over() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path());
    c.segment_size = 3 << 20;
    let mut kept = 0;
    run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        let first = spool.segments();
        // Past a quarter of the segment: the next one is made and filled with zeros.
        let mut i = 1;
        while lengths(&c.dir).len() == first.len() && i < 100 {
            append(&spool, &big(i, 64)).await;
            i += 1;
        }
        let ahead = lengths(&c.dir).last().unwrap().0;
        assert!(ahead > *first.last().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        while lengths(&c.dir).last().unwrap().1 < c.segment_size && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            lengths(&c.dir).last().unwrap(),
            &(ahead, c.segment_size),
            "the segment made ahead is as long as a segment"
        );
        let on_disk: u64 = lengths(&c.dir).iter().map(|(_, len)| len).sum();
        assert_eq!(spool.disk_bytes(), on_disk);
        // The roll writes over the zeros.
        while !spool.segments().contains(&ahead) && i < 200 {
            append(&spool, &big(i, 64)).await;
            i += 1;
        }
        // One kept: read back after the restart from the records written over the zeros.
        spool.append_message(&big(i, 1)).await.unwrap();
        kept = i;
        assert_eq!(
            lengths(&c.dir).iter().find(|(n, _)| *n == ahead).unwrap().1,
            c.segment_size,
            "records went over the zeros: the file did not grow"
        );
        spool.close().await.unwrap();
    });
    let rec = recovered(&c);
    let got: Vec<u64> = rec.iter().map(|m| m.message.id).collect();
    assert_eq!(
        got,
        vec![kept],
        "the one kept, no record read from the zeros"
    );
    assert_eq!(rec[0].message.body, big(kept, 1).body);
}

#[test]
fn a_roll_during_the_zeros_keeps_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path());
    // 32 pieces of zeros, a pause after each: the roll likely comes while they are written.
    c.segment_size = 32 << 20;
    let n = 40;
    run(async {
        let (spool, _) = Spool::open(c.clone()).await.unwrap();
        let first = *spool.segments().last().unwrap();
        for i in 1..=n {
            append(&spool, &big(i, 1024)).await;
        }
        spool.append_message(&big(n + 1, 1)).await.unwrap();
        assert!(
            spool.segments().iter().any(|&s| s > first),
            "rolled into the segment made ahead"
        );
        spool.close().await.unwrap();
    });
    let rec = recovered(&c);
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].message.body, big(n + 1, 1).body);
}

#[test]
fn a_zero_filled_segment_left_by_a_crash_is_retired_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    spool_with_one_message(&c);
    // What a crash leaves when the next segment was made ahead and filled: a header, zeros.
    let left = c.dir.join(segment_file_name(7));
    let mut bytes = format::encode_header(0, 7).to_vec();
    bytes.resize(1 << 20, 0);
    std::fs::write(&left, bytes).unwrap();
    run(async {
        let (spool, rec) = Spool::open(c.clone()).await.unwrap();
        assert_eq!(rec.messages.len(), 1);
        assert!(!spool.segments().contains(&7));
        spool.close().await.unwrap();
    });
    assert!(!left.exists(), "the empty segment was retired");
}

#[test]
fn a_batch_torn_over_zeros_is_cut_like_any_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    spool_with_one_message(&c);
    let path = c.dir.join(segment_file_name(1));
    let good = std::fs::metadata(&path).unwrap().len();
    // A crash in the middle of a batch written over zeros: a frame's start and part of its
    // payload reached the disk, then the zeros that were there (far more than a batch).
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&200u32.to_le_bytes());
    bytes.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    bytes.extend_from_slice(&[KIND_MESSAGE, 0, 0, 0]);
    bytes.extend_from_slice(&[b'x'; 50]);
    bytes.resize(2 * c.max_batch_bytes + (1 << 20), 0);
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(recovered(&c).len(), 1);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        good,
        "cut as a torn tail, not kept as damage"
    );
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
        // Past a quarter of the segment (three quarters without zeros): the next file appears before any roll.
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
        // Fill the current one past that point too: its successor is made, never used,
        // and removed at close.
        let unused = loop {
            spool.append_message(&msg(i, 1)).await.unwrap();
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            i += 1;
            let (on_disk, in_use) = (files(&c.dir), spool.segments());
            let extra = on_disk.last().filter(|n| !in_use.contains(n)).copied();
            if let Some(n) = extra.filter(|n| *n > ahead) {
                break n;
            }
            assert!(i < 400, "no segment made ahead: {on_disk:?} {in_use:?}");
        };
        spool.close().await.unwrap();
        // A retire record written after the last append (old segments emptied by copy-forward)
        // may have rolled into the segment made ahead: what counts is the spool's segments as
        // it closed.
        let (after, in_use) = (files(&c.dir), spool.segments());
        assert_eq!(
            after, in_use,
            "no file but the segments in use (the unused one was {unused})"
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
    spool_with_one_message(&c);
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
