//! Copy-forward: emptying old segments that only a few long-lived messages keep alive.
//!
//! What it does: when a batch is about to open a new segment, finds older segments whose
//! still-open messages are few, copies each of those messages' frames to the front of the batch
//! as a move record (same payload, kind `KIND_MOVE`, or `KIND_MOVE_V4` for a version-4 payload), followed by a state record for every
//! recipient already final and the latest deferral of the others (so attempt counts and retry
//! times survive), and a hold record if an operator holds the message; once the batch is
//! durable the ledger re-homes the messages, and the old segments (and the segments their
//! final states and holds pinned) become deletable.
//!
//! What it does not do: no decisions about delivery; no moving of a segment that still holds
//! many open messages (copying it would cost more than keeping it); no moves in a batch that
//! carries no records of its own (a retire record alone).
//!
//! Invariants: move records come first in their batch, so any state record of the same batch
//! applies to the message in its new home, at runtime and in recovery alike; a move is applied
//! to the ledger only after its batch's `fdatasync`; a frame that fails its checks is not moved.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use glommio::io::BufferedFile;
use tracing::{debug, warn};

use super::{Batch, Committer, io_err};
use crate::spool::format::{self, FRAME_HEADER_LEN, KIND_HOLD, KIND_STATE, MAX_RECORD_LEN};
use crate::spool::ledger::Forward;
use crate::spool::model::{HoldRecord, StateRecord};
use crate::spool::recovery::segment_file_name;

/// Segments with at most this many open messages are emptied.
const MAX_OPEN_MESSAGES: usize = 64;
/// At most this many octets of message frames are copied per new segment.
const MAX_BYTES: usize = 8 << 20;

/// The moves placed at the front of a batch: (id, frame offset in the batch).
#[derive(Default)]
pub(super) struct Forwarding {
    pub(super) moves: Vec<(u64, u64)>,
}

impl Committer {
    /// If this batch opens a new segment, puts the move records of old, nearly empty segments
    /// at its front (shifting the batch's own frames).
    pub(super) async fn add_forwarding(&mut self, batch: &mut Batch) -> Forwarding {
        // A batch with no records of its own (a retire record alone) moves nothing: moves that
        // filled the new segment would seal it, retire the old ones and so call for another
        // retire-only batch and another new segment, without end and without any mail.
        if self.seg.is_some() || batch.waiters.is_empty() {
            return Forwarding::default();
        }
        let plan = {
            let st = self.inner.st.borrow();
            st.ledger.forward_candidates(st.current, MAX_OPEN_MESSAGES)
        };
        if plan.is_empty() {
            return Forwarding::default();
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut front = Vec::new();
        let mut fwd = Forwarding::default();
        for (seg, messages) in plan {
            if front.len() >= MAX_BYTES {
                break;
            }
            let path = self.inner.cfg.dir.join(segment_file_name(seg));
            let file = match BufferedFile::open(&path).await {
                Ok(f) => f,
                Err(e) => {
                    warn!(segment = seg, error = %e, "copy-forward: cannot open segment");
                    continue;
                }
            };
            for Forward {
                id,
                offset,
                finals,
                deferred,
                held,
            } in messages
            {
                match read_frame(&file, offset).await {
                    Ok(frame) if format::decode_message_at(&frame, 0).is_ok() => {
                        let at = front.len() as u64;
                        let payload = &frame[FRAME_HEADER_LEN..];
                        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
                        let payload = &payload[..len as usize];
                        // The class byte moves with the message (format version 5).
                        if format::push_frame_class(
                            &mut front,
                            format::move_kind(frame[8]),
                            frame[9],
                            payload,
                        )
                        .is_err()
                        {
                            front.truncate(at as usize);
                            continue;
                        }
                        let mut ok = true;
                        let states = finals
                            .iter()
                            .enumerate()
                            .filter_map(|(r, k)| k.to_state(now_ms).map(|s| (r as u32, s)))
                            .chain(deferred);
                        for (recipient, state) in states {
                            let rec = StateRecord {
                                id,
                                recipient,
                                state,
                            };
                            ok &= format::encode_state(&rec)
                                .and_then(|p| format::push_frame(&mut front, KIND_STATE, &p))
                                .is_ok();
                        }
                        if held {
                            ok &= format::encode_hold(&HoldRecord { id, held })
                                .and_then(|p| format::push_frame(&mut front, KIND_HOLD, &p))
                                .is_ok();
                        }
                        if ok {
                            fwd.moves.push((id, at));
                        } else {
                            front.truncate(at as usize);
                        }
                    }
                    Ok(_) | Err(_) => {
                        warn!(
                            segment = seg,
                            offset, "copy-forward: message frame unreadable; left in place"
                        );
                    }
                }
            }
            let _ = file.close().await;
        }
        if front.is_empty() {
            return Forwarding::default();
        }
        debug!(moved = fwd.moves.len(), bytes = front.len(), "copy-forward");
        let shift = front.len() as u64;
        for w in &mut batch.waiters {
            w.offset += shift;
        }
        front.extend_from_slice(&batch.buf);
        batch.buf = front;
        fwd
    }
}

/// The whole frame (header, payload, padding) starting at `offset`.
async fn read_frame(file: &BufferedFile, offset: u64) -> io::Result<Vec<u8>> {
    let head = file
        .read_at(offset, FRAME_HEADER_LEN)
        .await
        .map_err(io_err)?;
    if head.len() < FRAME_HEADER_LEN {
        return Err(io::Error::other("short frame header"));
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(io::Error::other("bad frame length"));
    }
    let frame = file
        .read_at(offset, format::frame_len(len))
        .await
        .map_err(io_err)?;
    Ok(frame.to_vec())
}
