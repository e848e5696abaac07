//! On-disk format of a spool segment: the 32-byte header, record framing, and the one walker
//! ([`RecordIter`]) that both recovery and the offline reader use.
//!
//! What it does: encodes headers and frames, and walks a segment's bytes yielding records that
//! passed every check (frame fits, reserved bytes zero, CRC32C, known kind, rkyv bytecheck),
//! stopping at the first one that does not and reporting where valid data ends and why.
//!
//! What it does not do: no file I/O, no decisions (truncation, deletion, accounting live in
//! `recovery.rs` and `ledger.rs`). It never resynchronises after a bad frame: a message body
//! could contain a well-formed frame, and trusting it would let a client forge records.
//!
//! Invariants: frames start at 8-byte aligned offsets (the header is 32 bytes and every frame
//! is padded to a multiple of 8); `len` never exceeds [`MAX_RECORD_LEN`]; an all-zero frame
//! header ends the segment.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::SpoolError;
use super::legacy::{ArchivedMessageRecordV4, MessageRecordV4};
use super::model::{ArchivedMessageRecord, HoldRecord, MessageRecord, RetireRecord, StateRecord};

/// Segment file magic.
pub const MAGIC: &[u8; 8] = b"MTASPOOL";
/// Current format version (header field). Version 4: a [`MessageRecord`]'s MAIL parameters
/// may hold `REQUIRETLS` (RFC 8689), which older builds would drop and so deliver the message
/// without the TLS it demands; they refuse version-4 segments instead. Version 5: messages are
/// kinds 6 and 7, whose [`MessageRecord`] carries the campaign and tenant (kinds 1 and 4, the
/// version-4 layout, are still read), and the first reserved byte of a message or move frame
/// holds the message's priority class ([`MessageRecord::priority`]); older segments have 0
/// there, "no class chosen".
pub const FORMAT_VERSION: u32 = 5;
/// The oldest format version this build reads (version 1 has no move records).
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// Segment header length.
pub const HEADER_LEN: usize = 32;
/// Frame header length (`len: u32`, `crc: u32`, `kind: u8`, `class: u8` (message and move
/// frames; zero in others), 2 reserved zero bytes).
pub const FRAME_HEADER_LEN: usize = 12;
/// Largest payload accepted on write and on read (256 MiB).
pub const MAX_RECORD_LEN: usize = 256 << 20;
/// Record kind of a [`MessageRecord`] (format version 5; with campaign and tenant).
pub const KIND_MESSAGE: u8 = 6;
/// Record kind of a message in the version-4 layout ([`MessageRecordV4`]), read only.
pub const KIND_MESSAGE_V4: u8 = 1;
/// Record kind of a [`StateRecord`].
pub const KIND_STATE: u8 = 2;
/// Record kind of a [`RetireRecord`].
pub const KIND_RETIRE: u8 = 3;
/// Record kind of a moved message: the same payload as [`KIND_MESSAGE`], copied forward from
/// an older segment (format version 2). It re-homes a message already counted as accepted.
pub const KIND_MOVE: u8 = 7;
/// Record kind of a moved message in the version-4 layout (format versions 2 to 4): copy-forward
/// still writes it for such a payload, which it copies unchanged.
pub const KIND_MOVE_V4: u8 = 4;

/// The kind of a move record for a payload copied from a frame of `kind` (the layout stays).
pub fn move_kind(kind: u8) -> u8 {
    match kind {
        KIND_MESSAGE_V4 | KIND_MOVE_V4 => KIND_MOVE_V4,
        _ => KIND_MOVE,
    }
}
/// Record kind of a [`HoldRecord`] (format version 3).
pub const KIND_HOLD: u8 = 5;

/// Encodes a segment header.
pub fn encode_header(shard: u32, segment: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&shard.to_le_bytes());
    h[16..24].copy_from_slice(&segment.to_le_bytes());
    h
}

/// Result of checking a segment header.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderCheck {
    /// A valid header for the expected shard and segment.
    Valid,
    /// Shorter than a header, or an all-zero header: the file was created but its first write
    /// never reached the disk (a crash while opening a segment). Holds no records.
    Missing,
    /// Not a segment of this shard/number/version: a foreign or misplaced file.
    Bad(String),
}

/// Checks the header of a segment file's bytes against the expected shard and number.
pub fn check_header(bytes: &[u8], shard: u32, segment: u64) -> HeaderCheck {
    if bytes.len() < HEADER_LEN || bytes[..HEADER_LEN].iter().all(|&b| b == 0) {
        return HeaderCheck::Missing;
    }
    let h = &bytes[..HEADER_LEN];
    if &h[..8] != MAGIC {
        return HeaderCheck::Bad("bad magic".into());
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap());
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        return HeaderCheck::Bad(format!("unsupported format version {version}"));
    }
    let s = u32::from_le_bytes(h[12..16].try_into().unwrap());
    if s != shard {
        return HeaderCheck::Bad(format!("header says shard {s}, expected {shard}"));
    }
    let n = u64::from_le_bytes(h[16..24].try_into().unwrap());
    if n != segment {
        return HeaderCheck::Bad(format!(
            "header says segment {n:016x}, file name {segment:016x}"
        ));
    }
    if h[24..].iter().any(|&b| b != 0) {
        return HeaderCheck::Bad("reserved header bytes are not zero".into());
    }
    HeaderCheck::Valid
}

/// Size of a frame holding `payload_len` bytes, padding included.
pub fn frame_len(payload_len: usize) -> usize {
    (FRAME_HEADER_LEN + payload_len).next_multiple_of(8)
}

fn frame_crc(kind: u8, class: u8, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind, class, 0, 0]), payload)
}

/// Appends one frame (header, payload, zero padding) to `buf`.
pub fn push_frame(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) -> Result<(), SpoolError> {
    push_frame_class(buf, kind, 0, payload)
}

/// Appends one frame whose class byte is `class` (a message's priority class, format
/// version 5; 0 for other kinds).
pub fn push_frame_class(
    buf: &mut Vec<u8>,
    kind: u8,
    class: u8,
    payload: &[u8],
) -> Result<(), SpoolError> {
    if payload.len() > MAX_RECORD_LEN {
        return Err(SpoolError::RecordTooLarge);
    }
    if class > crate::priority::MAX_CODE
        || (class != 0 && !matches!(kind, KIND_MESSAGE | KIND_MOVE))
    {
        return Err(SpoolError::InvalidRecord("bad class byte"));
    }
    let total = frame_len(payload.len());
    buf.reserve(total);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&frame_crc(kind, class, payload).to_le_bytes());
    buf.extend_from_slice(&[kind, class, 0, 0]);
    buf.extend_from_slice(payload);
    buf.resize(buf.len() + total - FRAME_HEADER_LEN - payload.len(), 0);
    Ok(())
}

fn encode_err(e: rancor::Error) -> SpoolError {
    SpoolError::Encode(e.to_string())
}

/// Serializes a message record payload.
pub fn encode_message(msg: &MessageRecord) -> Result<AlignedVec, SpoolError> {
    rkyv::to_bytes::<rancor::Error>(msg).map_err(encode_err)
}
/// Serializes a state record payload.
pub fn encode_state(rec: &StateRecord) -> Result<AlignedVec, SpoolError> {
    rkyv::to_bytes::<rancor::Error>(rec).map_err(encode_err)
}
/// Serializes a retire record payload.
pub fn encode_retire(rec: &RetireRecord) -> Result<AlignedVec, SpoolError> {
    rkyv::to_bytes::<rancor::Error>(rec).map_err(encode_err)
}

/// Serializes a hold record payload.
pub fn encode_hold(rec: &HoldRecord) -> Result<AlignedVec, SpoolError> {
    rkyv::to_bytes::<rancor::Error>(rec).map_err(encode_err)
}

/// A record that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A message record at `offset` (frame start); decode it with [`decode_message_at`].
    Message {
        /// Frame offset in the segment.
        offset: u64,
        /// `QueueId.0`.
        id: u64,
        /// Number of recipients.
        recipients: u32,
    },
    /// A message copied forward from an older segment (same payload as `Message`).
    Move {
        /// Frame offset in the segment.
        offset: u64,
        /// `QueueId.0`.
        id: u64,
        /// Number of recipients.
        recipients: u32,
    },
    /// A state record.
    State {
        /// Frame offset in the segment.
        offset: u64,
        /// The record.
        rec: StateRecord,
    },
    /// A retire record.
    Retire {
        /// Frame offset in the segment.
        offset: u64,
        /// The record.
        rec: RetireRecord,
    },
    /// A hold record (format version 3).
    Hold {
        /// Frame offset in the segment.
        offset: u64,
        /// The record.
        rec: HoldRecord,
    },
}

/// Why a walk stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The bytes ended exactly at a frame boundary.
    Clean,
    /// An all-zero frame header (zero-filled tail).
    ZeroTail,
    /// A frame header or payload runs past the end of the bytes (torn write).
    Torn,
    /// A frame failed a check.
    Invalid(&'static str),
}

/// Walks the records of one segment (the whole file's bytes, header included; the header is
/// checked separately with [`check_header`]).
pub struct RecordIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// File offset of `bytes[0]` (non-zero when a segment is read in pieces).
    base: u64,
    stop: Option<Stop>,
    scratch: AlignedVec,
}

impl<'a> RecordIter<'a> {
    /// Starts at the first frame (offset 32).
    pub fn new(bytes: &'a [u8]) -> Self {
        RecordIter {
            bytes,
            pos: HEADER_LEN.min(bytes.len()),
            base: 0,
            stop: None,
            scratch: AlignedVec::new(),
        }
    }
    /// Walks a piece of a segment: `bytes` starts at file offset `base`, and the walk at
    /// `bytes[pos]` (a frame boundary). Offsets in the records are file offsets.
    pub fn piece(bytes: &'a [u8], pos: usize, base: u64) -> Self {
        RecordIter {
            bytes,
            pos: pos.min(bytes.len()),
            base,
            stop: None,
            scratch: AlignedVec::new(),
        }
    }
    /// Offset just past the last valid record (the truncation point).
    pub fn valid_end(&self) -> u64 {
        self.base + self.pos as u64
    }
    /// Position in `bytes` just past the last valid record.
    pub fn pos(&self) -> usize {
        self.pos
    }
    /// Why the walk stopped (`None` while it has not).
    pub fn stop(&self) -> Option<Stop> {
        self.stop
    }

    fn step(&mut self) -> Result<Option<Record>, Stop> {
        let rest = &self.bytes[self.pos..];
        if rest.is_empty() {
            return Err(Stop::Clean);
        }
        // A zero `len` and `crc` (the first 8 bytes) mark the zero-filled tail.
        let head = &rest[..rest.len().min(8)];
        if head.iter().all(|&b| b == 0) {
            return Err(Stop::ZeroTail);
        }
        if rest.len() < FRAME_HEADER_LEN {
            return Err(Stop::Torn);
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
        let kind = rest[8];
        let class = rest[9];
        if rest[10..12] != [0, 0] {
            return Err(Stop::Invalid("reserved frame bytes are not zero"));
        }
        let may_class = matches!(kind, KIND_MESSAGE | KIND_MOVE);
        if class > crate::priority::MAX_CODE || (class != 0 && !may_class) {
            return Err(Stop::Invalid("bad class byte"));
        }
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(Stop::Invalid("bad length"));
        }
        let total = frame_len(len);
        if rest.len() < FRAME_HEADER_LEN + len {
            return Err(Stop::Torn);
        }
        let payload = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
        if frame_crc(kind, class, payload) != crc {
            return Err(Stop::Invalid("crc mismatch"));
        }
        if rest.len() < total {
            // Padding missing: the write was torn inside the padding.
            return Err(Stop::Torn);
        }
        let offset = self.base + self.pos as u64;
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        let rec = match kind {
            KIND_MESSAGE | KIND_MOVE | KIND_MESSAGE_V4 | KIND_MOVE_V4 => {
                let invalid = |_| Stop::Invalid("message fails validation");
                let (id, count) = match kind {
                    KIND_MESSAGE | KIND_MOVE => {
                        let m = rkyv::access::<ArchivedMessageRecord, rancor::Error>(&self.scratch)
                            .map_err(invalid)?;
                        (m.id.to_native(), m.recipients.len())
                    }
                    _ => {
                        let m =
                            rkyv::access::<ArchivedMessageRecordV4, rancor::Error>(&self.scratch)
                                .map_err(invalid)?;
                        (m.id.to_native(), m.recipients.len())
                    }
                };
                let recipients =
                    u32::try_from(count).map_err(|_| Stop::Invalid("too many recipients"))?;
                if kind == KIND_MOVE || kind == KIND_MOVE_V4 {
                    Record::Move {
                        offset,
                        id,
                        recipients,
                    }
                } else {
                    Record::Message {
                        offset,
                        id,
                        recipients,
                    }
                }
            }
            KIND_STATE => Record::State {
                offset,
                rec: rkyv::from_bytes::<StateRecord, rancor::Error>(&self.scratch)
                    .map_err(|_| Stop::Invalid("state fails validation"))?,
            },
            KIND_RETIRE => Record::Retire {
                offset,
                rec: rkyv::from_bytes::<RetireRecord, rancor::Error>(&self.scratch)
                    .map_err(|_| Stop::Invalid("retire fails validation"))?,
            },
            KIND_HOLD => Record::Hold {
                offset,
                rec: rkyv::from_bytes::<HoldRecord, rancor::Error>(&self.scratch)
                    .map_err(|_| Stop::Invalid("hold fails validation"))?,
            },
            _ => return Err(Stop::Invalid("unknown kind")),
        };
        self.pos += total;
        Ok(Some(rec))
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Record;
    fn next(&mut self) -> Option<Record> {
        if self.stop.is_some() {
            return None;
        }
        match self.step() {
            Ok(r) => r,
            Err(s) => {
                self.stop = Some(s);
                None
            }
        }
    }
}

/// Decodes (validates and deserializes) the message record whose frame starts at `offset` in
/// `bytes` (a segment's bytes), with its priority class from the frame. Used to load queued
/// messages after the walk.
pub fn decode_message_at(bytes: &[u8], offset: u64) -> Result<MessageRecord, String> {
    let off = usize::try_from(offset).map_err(|_| "offset out of range".to_string())?;
    let mut it = RecordIter::piece(bytes, off, 0);
    match it.step() {
        Ok(Some(Record::Message { .. } | Record::Move { .. })) => {
            let mut m = match bytes[off + 8] {
                KIND_MESSAGE | KIND_MOVE => {
                    rkyv::from_bytes::<MessageRecord, rancor::Error>(&it.scratch)
                        .map_err(|e| e.to_string())?
                }
                _ => rkyv::from_bytes::<MessageRecordV4, rancor::Error>(&it.scratch)
                    .map(MessageRecord::from)
                    .map_err(|e| e.to_string())?,
            };
            // The walk checked the frame, so its class byte is there and valid.
            m.priority = bytes[off + 9];
            Ok(m)
        }
        Ok(_) => Err(format!("no message record at offset {offset}")),
        Err(stop) => Err(format!("invalid record at offset {offset}: {stop:?}")),
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "class_tests.rs"]
mod class_tests;
