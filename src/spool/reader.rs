//! Reading segment files piece by piece, so that recovery holds a few MiB of a segment at a
//! time rather than the whole file.
//!
//! What it does: reads a segment's header, walks its frames with [`RecordIter`] over pieces of
//! about [`PIECE`] bytes (a piece grows to hold a frame larger than that), and reads single
//! frames at known offsets.
//!
//! What it does not do: no interpretation of records (the ledger's job), no writes. It uses
//! blocking positioned reads (`pread`), which is fine before serving.
//!
//! Invariants: the records and the stop are exactly those that [`RecordIter`] would give over
//! the whole file at once; a piece never holds more than `PIECE` bytes plus one frame.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::format::{
    FRAME_HEADER_LEN, HEADER_LEN, MAX_RECORD_LEN, Record, RecordIter, Stop, frame_len,
};

/// Bytes read at a time.
pub(crate) const PIECE: usize = 4 << 20;

/// Reads up to `len` bytes at `offset` (fewer at the end of the file).
fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// The first [`HEADER_LEN`] bytes of a segment (fewer if the file is shorter).
pub(crate) fn header(file: &File) -> io::Result<Vec<u8>> {
    read_at(file, 0, HEADER_LEN)
}

/// The bytes a frame starting at `bytes[0]` needs, if its header is there and sane.
fn frame_need(bytes: &[u8]) -> usize {
    if bytes.len() < FRAME_HEADER_LEN {
        return 0;
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if len == 0 || len > MAX_RECORD_LEN {
        return 0;
    }
    frame_len(len)
}

/// Walks the frames after the header of a segment file of `file_len` bytes, calling `each`
/// for every valid record in order. Returns the offset just past the last valid record and
/// why the walk stopped.
pub(crate) fn walk(
    file: &File,
    file_len: u64,
    mut each: impl FnMut(Record),
) -> io::Result<(u64, Stop)> {
    let mut buf: Vec<u8> = Vec::new();
    // File offset of buf[0].
    let mut base = (HEADER_LEN as u64).min(file_len);
    loop {
        let in_file = file_len.saturating_sub(base + buf.len() as u64);
        let want = frame_need(&buf).max(PIECE);
        let more = (want.saturating_sub(buf.len()) as u64).min(in_file) as usize;
        if more > 0 {
            let piece = read_at(file, base + buf.len() as u64, more)?;
            buf.extend_from_slice(&piece);
        }
        let at_eof = base + buf.len() as u64 >= file_len;
        let mut it = RecordIter::piece(&buf, 0, base);
        for r in it.by_ref() {
            each(r);
        }
        let stop = it.stop().unwrap_or(Stop::Clean);
        let pos = it.pos();
        let rest = buf.len() - pos;
        let again = !at_eof
            && match stop {
                // The piece ended inside (or right before) a frame: read on.
                Stop::Clean | Stop::Torn => true,
                // Fewer than 8 zero bytes at the end of a piece say nothing yet.
                Stop::ZeroTail => rest < 8,
                Stop::Invalid(_) => false,
            };
        if !again {
            return Ok((base + pos as u64, stop));
        }
        buf.drain(..pos);
        base += pos as u64;
    }
}

/// The bytes of the frame at `offset` (for [`super::format::decode_message_at`] at 0).
pub(crate) fn frame_at(file: &File, offset: u64) -> io::Result<Vec<u8>> {
    let head = read_at(file, offset, FRAME_HEADER_LEN)?;
    let need = frame_need(&head).max(FRAME_HEADER_LEN);
    read_at(file, offset, need)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::format::{self, KIND_MESSAGE};
    use crate::spool::model::{MessageRecord, Recipient};

    fn message(id: u64, body_len: usize) -> Vec<u8> {
        let m = MessageRecord {
            id,
            reverse_path: "a@example.com".into(),
            mail_params: vec![],
            recipients: vec![Recipient::new("b@example.net".to_owned())],
            arrival_unix_ms: 1,
            client_addr: "192.0.2.1:25".into(),
            helo: "h".into(),
            tls: None,
            auth: None,
            campaign: None,
            tenant: None,
            body: vec![b'x'; body_len],
            priority: 0,
        };
        format::encode_message(&m).unwrap().to_vec()
    }

    /// A segment with frames of many sizes (some larger than a piece), then `tail`.
    fn segment(tail: &[u8]) -> Vec<u8> {
        let mut b = format::encode_header(0, 1).to_vec();
        for (i, len) in [10, PIECE - 100, 3, PIECE + 5000, 77, 2 * PIECE, 1]
            .into_iter()
            .enumerate()
        {
            format::push_frame(&mut b, KIND_MESSAGE, &message(i as u64, len)).unwrap();
        }
        b.extend_from_slice(tail);
        b
    }

    fn offsets(records: &[Record]) -> Vec<u64> {
        records
            .iter()
            .map(|r| match r {
                Record::Message { offset, .. } => *offset,
                _ => u64::MAX,
            })
            .collect()
    }

    #[test]
    fn pieces_give_what_the_whole_file_gives() {
        let tmp = tempfile::tempdir().unwrap();
        for tail in [
            &b""[..],
            &[0u8; 4096][..],
            &[0u8; 5][..],
            &[1, 2, 3, 4, 5, 6, 7][..],
        ] {
            let bytes = segment(tail);
            // Cut at the end, inside the last frames, and inside the tail.
            for cut in [
                bytes.len(),
                bytes.len() - 3,
                bytes.len() - tail.len() - 9,
                PIECE + 7,
            ] {
                let bytes = &bytes[..cut];
                let path = tmp.path().join("seg");
                std::fs::write(&path, bytes).unwrap();
                let file = File::open(&path).unwrap();
                let mut got = Vec::new();
                let (end, stop) = walk(&file, bytes.len() as u64, |r| got.push(r)).unwrap();
                let mut whole = RecordIter::new(bytes);
                let want: Vec<Record> = whole.by_ref().collect();
                assert_eq!(offsets(&got), offsets(&want), "cut {cut}");
                assert_eq!(end, whole.valid_end(), "cut {cut}");
                assert_eq!(
                    format!("{stop:?}"),
                    format!("{:?}", whole.stop().unwrap()),
                    "cut {cut}"
                );
                if let Some(&first) = offsets(&got).get(1) {
                    let frame = frame_at(&file, first).unwrap();
                    let m = format::decode_message_at(&frame, 0).unwrap();
                    assert_eq!(m.id, 1);
                }
            }
        }
    }
}
