//! Fuzz body: the spool record walker and the offline recovery scan on corrupted or truncated
//! segment files.
//!
//! The first byte picks the mode: 0 raw octets after a valid segment header; 1 frames with
//! valid CRCs around arbitrary payloads (so the rkyv validation sees them); otherwise a valid
//! segment of a few messages and states, then cut and bit-flipped where the input says, split
//! over two segment files. Checks: no panic; the walk ends at an 8-aligned offset within the
//! file; every message it yields decodes; `read_offline` never panics, leaves the files as
//! they were, and gives the same answer twice.

use mta::spool::format::{
    self, KIND_MESSAGE, KIND_MOVE, KIND_RETIRE, KIND_STATE, RecordIter, encode_header, push_frame,
};
use mta::spool::{
    MessageRecord, Recipient, RecipientState, RetireRecord, StateRecord, Totals, read_offline,
    segment_file_name,
};

fn message(id: u64, recipients: usize) -> MessageRecord {
    MessageRecord {
        id,
        reverse_path: "a@src.test".into(),
        mail_params: vec![("BODY".into(), Some("8BITMIME".into()))],
        recipients: (0..recipients)
            .map(|i| Recipient::new(format!("r{i}@dest.test")))
            .collect(),
        arrival_unix_ms: 1_700_000_000_000 + id,
        client_addr: "127.0.0.1:2525".into(),
        helo: "c.test".into(),
        tls: None,
        auth: None,
        campaign: None,
        tenant: None,
        body: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
        priority: 0,
    }
}

fn state(id: u64, recipient: u32, pick: u8) -> StateRecord {
    let state = match pick % 4 {
        0 => RecipientState::Delivered { at_unix_ms: 1 },
        1 => RecipientState::Bounced { at_unix_ms: 2 },
        2 => RecipientState::Expired { at_unix_ms: 3 },
        _ => RecipientState::Deferred {
            at_unix_ms: 4,
            next_attempt_unix_ms: 5,
            attempts: 1,
        },
    };
    StateRecord {
        id,
        recipient,
        state,
    }
}

/// A valid segment built from `script`: each octet adds a message, a state or a retire.
fn valid_segment(n: u64, script: &[u8]) -> Vec<u8> {
    let mut b = encode_header(0, n).to_vec();
    let mut ids = 0u64;
    for &op in script.iter().take(32) {
        let r = match op % 5 {
            0 | 1 => {
                ids += 1;
                let m = message(n * 100 + ids, usize::from(op >> 5) + 1);
                push_frame(&mut b, KIND_MESSAGE, &format::encode_message(&m).unwrap())
            }
            2 | 3 => {
                let id = n * 100 + u64::from(op >> 4) % (ids + 1);
                let s = state(id, u32::from(op >> 6), op >> 3);
                push_frame(&mut b, KIND_STATE, &format::encode_state(&s).unwrap())
            }
            _ => {
                let rec = RetireRecord {
                    segments: vec![u64::from(op >> 5)],
                    totals: Totals::default(),
                };
                push_frame(&mut b, KIND_RETIRE, &format::encode_retire(&rec).unwrap())
            }
        };
        r.expect("small records encode");
    }
    b
}

/// Walks `bytes` as a segment, checking what the walker promises.
fn walk(bytes: &[u8]) {
    let mut it = RecordIter::new(bytes);
    let mut messages = Vec::new();
    for rec in it.by_ref().take(10_000) {
        if let format::Record::Message { offset, .. } | format::Record::Move { offset, .. } = rec {
            messages.push(offset);
        }
    }
    let end = it.valid_end();
    assert!(end <= bytes.len() as u64, "valid end past the file");
    assert_eq!(end % 8, 0, "valid end not aligned");
    for offset in messages {
        assert!(
            format::decode_message_at(bytes, offset).is_ok(),
            "yielded but undecodable"
        );
    }
    let _ = format::decode_message_at(bytes, end);
}

/// Writes `files` as shard 0's segments and reads the spool offline twice.
fn recover(files: &[(u64, Vec<u8>)]) {
    let Ok(tmp) = tempfile::tempdir() else {
        return;
    };
    let shard = tmp.path().join("shard-0");
    if std::fs::create_dir_all(&shard).is_err() {
        return;
    }
    for (n, bytes) in files {
        if std::fs::write(shard.join(segment_file_name(*n)), bytes).is_err() {
            return;
        }
    }
    let first = read_offline(tmp.path());
    let second = read_offline(tmp.path());
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            let ids = |o: &mta::spool::OfflineSpool| -> Vec<u64> {
                o.messages.iter().map(|m| m.message.id).collect()
            };
            assert_eq!(ids(a), ids(b));
            assert_eq!(a.stats.lifetime(), b.stats.lifetime());
        }
        (Err(_), Err(_)) => {}
        _ => panic!("offline reads differ: {first:?} / {second:?}"),
    }
    for (n, bytes) in files {
        let now = std::fs::read(shard.join(segment_file_name(*n))).unwrap_or_default();
        assert!(now == *bytes, "the offline reader changed segment {n}");
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let segment = match mode % 3 {
        0 => {
            let mut b = encode_header(0, 1).to_vec();
            b.extend_from_slice(rest);
            b
        }
        1 => {
            // [kind, len, payload...] repeated; the CRC is made valid.
            let mut b = encode_header(0, 1).to_vec();
            let mut r = rest;
            while let [kind, len, tail @ ..] = r {
                let kinds = [KIND_MESSAGE, KIND_STATE, KIND_RETIRE, KIND_MOVE, *kind];
                let n = usize::from(*len).min(tail.len());
                let _ = push_frame(&mut b, kinds[usize::from(*kind) % 5], &tail[..n]);
                r = &tail[n..];
            }
            b
        }
        _ => {
            // [script len, script..., cut hi, cut lo, flips...]
            let (script, tail) = match rest.split_first() {
                Some((&n, t)) => t.split_at(usize::from(n).min(t.len())),
                None => (&[][..], &[][..]),
            };
            let mut b = valid_segment(1, script);
            if let [hi, lo, flips @ ..] = tail {
                let cut = usize::from(u16::from_be_bytes([*hi, *lo]));
                if cut < b.len() && cut >= 32 {
                    b.truncate(cut);
                }
                for pair in flips.chunks(3) {
                    if let [a, c, x] = pair {
                        let at = usize::from(u16::from_be_bytes([*a, *c]));
                        if let Some(len) = b.len().checked_sub(1) {
                            b[at % (len + 1)] ^= x;
                        }
                    }
                }
            }
            let second = valid_segment(2, &script.iter().rev().copied().collect::<Vec<_>>());
            walk(&second);
            walk(&b);
            recover(&[(1, b), (2, second)]);
            return;
        }
    };
    walk(&segment);
    recover(&[(1, segment)]);
}
