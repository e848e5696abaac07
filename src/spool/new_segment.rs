//! A new segment file made ready for records: created, its header written, file and directory
//! synced, and (made ahead) filled with zeros.
//!
//! What it does: [`make`] creates segment `number` (`O_EXCL`), writes its header, opens the
//! second descriptor that small batches are written through, and syncs the file and the
//! directory (with `sync = "always"`). The committer makes the next segment in a task of its own
//! ([`Ahead`]) once the current one is a quarter full (three quarters without `preallocate`), so
//! a roll finds it ready instead of stopping every commit of the shard for the creation (15 ms
//! measured on a busy disk). With `preallocate` and `sync = "always"` that task then writes
//! zeros over the whole segment, 1 MiB at a time, each piece synced, with a pause between
//! pieces so that the zeros never crowd the commits' syncs on the disk: a commit then
//! overwrites blocks the file already has, and its `fdatasync` does not also write the file's
//! new size (`docs/BENCHMARKS.md`: 0.82x the median reply time, 0.59x the p99.9, 1.05x the
//! pipelined rate). A roll that comes first stops the zeros after the piece or pause in
//! progress and takes the segment as it is: the rest is appended as before.
//!
//! What it does not do: no ledger work: a segment is known to the ledger only when the
//! committer adopts it. A segment made ahead and never used is removed at close; one left by a
//! crash holds a header (and zeros) only and recovery retires it like any other empty segment.
//! The spool reads a zero frame as the end of a segment (`SPOOL_FORMAT.md`), so zeros are
//! never taken for records.
//!
//! Invariants: a segment is returned only once its header and directory entry are durable; on
//! failure the file is removed and closed (a failure while writing zeros only stops the zeros);
//! the spool's disk bytes count the file from its creation to its removal (a piece of zeros
//! from the moment it is being written).

use std::cell::Cell;
use std::io;
use std::os::unix::fs::FileExt;
use std::rc::Rc;
use std::time::Duration;

use glommio::io::{BufferedFile, Directory, OpenOptions};

use super::Inner;
use super::committer::io_err;
use crate::spool::config::SyncMode;
use crate::spool::format;
use crate::spool::recovery::segment_file_name;
use tracing::warn;

/// Zeros are written this much at a time, each piece synced before the next.
const ZERO_PIECE: usize = 1 << 20;
/// The pause after each piece of zeros: under 100 MiB/s of zeros whatever the disk (a piece's
/// own write and sync come on top), so a 64 MiB segment takes at least 0.64 s.
const ZERO_PAUSE: Duration = Duration::from_millis(10);

/// A segment file ready for its first batch.
pub(super) struct NewSegment {
    pub(super) number: u64,
    pub(super) file: BufferedFile,
    /// The same file, for small writes on the shard's thread.
    pub(super) direct: std::fs::File,
}

/// Creates segment `number` and makes its header and directory entry durable.
pub(super) async fn make(
    inner: Rc<Inner>,
    dir: Rc<Directory>,
    number: u64,
) -> io::Result<NewSegment> {
    let path = inner.cfg.dir.join(segment_file_name(number));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .buffered_open(&path)
        .await
        .map_err(io_err)?;
    // The file counts in the spool's disk bytes from the moment it exists.
    let sizes = |len: Option<u64>| set_size(&inner, number, len);
    sizes(Some(0));
    let header = format::encode_header(u32::from(inner.cfg.shard), number);
    let r = async {
        // A second descriptor of the same file (opened once per segment, no `unsafe`); the
        // header goes through it at once, so that the disk bytes are right at every await.
        let direct = std::fs::OpenOptions::new().write(true).open(&path)?;
        direct.write_all_at(&header, 0)?;
        sizes(Some(header.len() as u64));
        if inner.cfg.sync == SyncMode::Always {
            file.fdatasync().await.map_err(io_err)?;
            dir.sync().await.map_err(io_err)?;
        }
        Ok::<_, io::Error>(direct)
    }
    .await;
    match r {
        Ok(direct) => Ok(NewSegment {
            number,
            file,
            direct,
        }),
        Err(e) => {
            if file.remove().await.is_ok() {
                sizes(None);
            }
            let _ = file.close().await;
            Err(e)
        }
    }
}

/// Removes a segment made ahead that no batch used (at close).
pub(super) async fn discard(inner: &Inner, seg: NewSegment) {
    if seg.file.remove().await.is_ok() {
        inner.st.borrow_mut().seg_bytes.remove(&seg.number);
    }
    let _ = seg.file.close().await;
}

/// Records the size of segment `number` in the spool's disk bytes (None: the file is gone).
fn set_size(inner: &Inner, number: u64, len: Option<u64>) {
    let mut st = inner.st.borrow_mut();
    match len {
        Some(len) => st.seg_bytes.insert(number, len),
        None => st.seg_bytes.remove(&number),
    };
}

/// The next segment, being made (and filled with zeros) in a task of its own.
pub(super) struct Ahead {
    task: glommio::Task<io::Result<NewSegment>>,
    /// Set when the segment is wanted now: the zeros stop after the piece or pause in progress.
    hurry: Rc<Cell<bool>>,
}

impl Ahead {
    /// Starts making segment `number`.
    pub(super) fn start(inner: Rc<Inner>, dir: Rc<Directory>, number: u64) -> Ahead {
        let hurry = Rc::new(Cell::new(false));
        let stop = hurry.clone();
        let task = glommio::spawn_local(async move {
            let seg = make(inner.clone(), dir, number).await?;
            if inner.cfg.fills_with_zeros() {
                fill_with_zeros(&inner, &seg, &stop).await;
            }
            Ok(seg)
        });
        Ahead { task, hurry }
    }

    /// The segment, as soon as it exists and its header is durable (the zeros stop).
    pub(super) async fn take(self) -> io::Result<NewSegment> {
        self.hurry.set(true);
        self.task.await
    }
}

/// Writes zeros from the end of `seg`'s header to the segment size, piece by piece (see the
/// module header), until done or `stop`. A failure ends the zeros with a warning: the segment
/// stays valid, the rest of it is appended to.
async fn fill_with_zeros(inner: &Inner, seg: &NewSegment, stop: &Cell<bool>) {
    let size = inner.cfg.segment_size;
    let mut pos = format::HEADER_LEN as u64;
    while pos < size && !stop.get() {
        let n = ZERO_PIECE.min((size - pos) as usize);
        // Counted before it is written, so the disk bytes are never below the file's size.
        set_size(inner, seg.number, Some(pos + n as u64));
        let written = match seg.file.write_at(vec![0; n], pos).await {
            Ok(w) if w > 0 => w,
            other => {
                let error = other
                    .err()
                    .map_or("nothing written".to_owned(), |e| e.to_string());
                warn!(%error, segment = seg.number, "filling a spool segment with zeros failed");
                let len = seg.direct.metadata().map_or(pos, |m| m.len());
                set_size(inner, seg.number, Some(len));
                return;
            }
        };
        pos += written as u64;
        set_size(inner, seg.number, Some(pos));
        if let Err(e) = seg.file.fdatasync().await {
            warn!(error = %e, segment = seg.number, "syncing the zeros of a spool segment failed");
            return;
        }
        if !stop.get() {
            glommio::timer::sleep(ZERO_PAUSE).await;
        }
    }
}
