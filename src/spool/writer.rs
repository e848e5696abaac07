//! The live spool of one shard: the [`Spool`] handle that sessions and delivery append through.
//!
//! What it does: `append_*` frames a record into the back batch of the pending queue, registers
//! a oneshot waiter and wakes the committer. The committer pops the front batch (new appends go
//! to the next one meanwhile), writes it at the segment's tail with one write, `fdatasync`s,
//! applies the batch to the [`Ledger`], and completes every waiter; the next batch of the same
//! segment is written and synced while a sync runs (two in flight at most). Segments whose
//! recipients are all final (and not pinned) are retired: a [`RetireRecord`] is committed first, then the
//! files are unlinked and the directory synced by a task beside the committer (so the next
//! commits do not wait for it).
//!
//! What it does not do: no reading of message bodies after recovery, no scheduling, no retry of
//! a failed batch (the callers decide). The committer task itself is in `committer.rs`, the
//! copy-forward of stragglers in `forward.rs`.
//!
//! Invariants:
//! - A waiter gets `Ok` only after the fdatasync covering its record returned (and, for a new
//!   segment, the directory sync). [`SyncMode::Never`] skips both and exists only to measure.
//! - After a write/sync error the segment is abandoned: never written or synced again; it is
//!   kept for recovery if it holds committed records (so a record of the failed batch may come
//!   back after a restart: at-least-once), and removed if it holds none.
//! - The ledger only ever sees durable records; a segment is unlinked only after the retire
//!   record naming it is durable; the current segment is never retired.
//! - No `RefCell` borrow is held across an `.await`: the committer owns the file handles, the
//!   shared state is only touched in short synchronous sections.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::task::Waker;

use futures_channel::oneshot;
use glommio::io::{BufferedFile, Directory};
use tracing::{debug, error, warn};

use super::SpoolError;
use super::config::{SpoolConfig, SpoolCounts, SpoolStats, SyncMode};
use super::format::{self, HEADER_LEN, KIND_HOLD, KIND_MESSAGE, KIND_RETIRE, KIND_STATE, Stop};
use super::ledger::{Ledger, StateOutcome};
use super::model::{HoldRecord, MAX_SHARDS, MessageRecord, QueueId, RetireRecord, StateRecord};
use super::recovery::{self, Recovered, segment_file_name};
use crate::metrics::ShardMetrics;

#[path = "committer.rs"]
mod committer;
#[path = "forward.rs"]
mod forward;
#[path = "in_flight.rs"]
mod in_flight;
#[path = "new_segment.rs"]
mod new_segment;
#[path = "pending.rs"]
mod pending;
#[cfg(test)]
pub(super) use pending::STATE_LINGER;

use committer::{Committer, io_err};

enum Effect {
    Message { id: u64, recipients: u32 },
    State(StateRecord),
    Hold(HoldRecord),
}

struct Waiter {
    /// Who waits for the record to be durable; None for a detached state record (a failure is
    /// logged instead).
    tx: Option<oneshot::Sender<Result<(), SpoolError>>>,
    effect: Effect,
    /// Frame offset inside the batch buffer.
    offset: u64,
}

/// Tells a record's waiter its fate, or logs a failure nobody waits for.
fn answer(tx: Option<oneshot::Sender<Result<(), SpoolError>>>, r: Result<(), SpoolError>) {
    match (tx, r) {
        (Some(tx), r) => {
            let _ = tx.send(r);
        }
        (None, Ok(())) => {}
        (None, Err(e)) => warn!(error = %e, "recording a delivery state failed"),
    }
}

#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    waiters: Vec<Waiter>,
    /// Whether a record of it has a waiter (not only detached delivery states): only such a
    /// batch is written beside a sync in flight or committed without lingering.
    awaited: bool,
}

struct State {
    batches: VecDeque<Batch>,
    spare: Vec<u8>,
    ledger: Ledger,
    /// Deletable segments awaiting a durable retire record.
    retire_queue: Vec<u64>,
    /// A retire-only commit failed: retry only together with the next real batch.
    retire_blocked: bool,
    /// Retired segments whose unlink failed: named again by every retire record until gone,
    /// so that recovery never counts them twice.
    lingering: Vec<u64>,
    /// Segment being written (None between an abandon/roll and the next batch).
    current: Option<u64>,
    closing: bool,
    /// Bytes of each segment file on disk (for the metrics, without a directory scan).
    seg_bytes: BTreeMap<u64, u64>,
}

struct Inner {
    cfg: SpoolConfig,
    st: RefCell<State>,
    stats: Cell<SpoolStats>,
    waker: Cell<Option<Waker>>,
    done: RefCell<Option<oneshot::Receiver<Result<(), SpoolError>>>>,
    metrics: RefCell<Option<Rc<ShardMetrics>>>,
    /// Called before each batch is written (the event log writes its buffer).
    before_write: RefCell<Option<Rc<dyn Fn()>>>,
    /// The unlinking of retired segments in progress (one at a time, beside the commits).
    deleting: RefCell<Option<glommio::Task<()>>>,
    #[cfg(test)]
    fail_syncs: Cell<u32>,
    /// Test hook: the next `fdatasync` returns 50 ms late, failing if true.
    #[cfg(test)]
    late_sync: Cell<Option<bool>>,
}

impl Inner {
    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
    #[cfg(test)]
    fn take_late_sync(&self) -> Option<bool> {
        self.late_sync.take()
    }
    fn bump(&self, f: impl FnOnce(&mut SpoolStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }
}

/// Hold records waited for at once by [`Spool::append_holds`] (bounds what a bulk hold keeps
/// in flight).
pub const HOLDS_PER_COMMIT: usize = 4096;

/// Handle to one shard's spool (cheap to clone; all clones share the spool).
#[derive(Clone)]
pub struct Spool(Rc<Inner>);

impl Spool {
    /// Creates the shard dir if needed, recovers every segment (validating each record: CRC,
    /// then rkyv check; the first torn/zero/invalid record ends the segment and the file is
    /// truncated there), deletes segments in which every recipient is final, and opens a
    /// fresh segment numbered max(existing)+1. Also spawns the committer task on the current
    /// executor (glommio::spawn_local).
    pub async fn open(cfg: SpoolConfig) -> Result<(Spool, Recovered), SpoolError> {
        if cfg.shard >= MAX_SHARDS {
            return Err(SpoolError::InvalidConfig(format!(
                "shard {} >= 1024",
                cfg.shard
            )));
        }
        if cfg.segment_size < HEADER_LEN as u64 || cfg.max_batch_bytes == 0 {
            return Err(SpoolError::InvalidConfig(
                "segment_size/max_batch_bytes too small".into(),
            ));
        }
        std::fs::create_dir_all(&cfg.dir)?;
        let mut scan = recovery::scan_shard(&cfg.dir, u32::from(cfg.shard))?;
        let durable = cfg.sync == SyncMode::Always;
        let mut removed_any = false;
        for seg in &scan.segments {
            if seg.empty || scan.leftovers.contains(&seg.number) {
                // Never reached the disk, or already counted by a durable retire record.
                std::fs::remove_file(&seg.path)?;
                removed_any = true;
                continue;
            }
            if durable {
                // A killed process leaves written-but-unsynced data in the page cache: make
                // what we are about to trust durable before acting on it.
                std::fs::File::open(&seg.path)?.sync_data()?;
            }
            if seg.valid_end < seg.file_len {
                cut_tail(&cfg, seg)?;
            }
        }
        if removed_any && durable {
            std::fs::File::open(&cfg.dir)?.sync_all()?;
        }
        let mut seg_bytes = BTreeMap::new();
        for seg in &scan.segments {
            if let Ok(m) = std::fs::metadata(&seg.path) {
                seg_bytes.insert(seg.number, m.len());
            }
        }
        let messages = recovery::load_queued(&mut scan, cfg.recovery_body_budget)?;
        let next = scan
            .segments
            .iter()
            .map(|s| s.number + 1)
            .max()
            .unwrap_or(1);
        let retire_queue = scan.retirable();
        let stats = scan.stats;
        let (done_tx, done_rx) = oneshot::channel();
        let inner = Rc::new(Inner {
            st: RefCell::new(State {
                batches: VecDeque::new(),
                spare: Vec::new(),
                ledger: scan.ledger,
                retire_queue,
                retire_blocked: false,
                lingering: Vec::new(),
                current: None,
                closing: false,
                seg_bytes,
            }),
            stats: Cell::new(SpoolStats::default()),
            waker: Cell::new(None),
            done: RefCell::new(Some(done_rx)),
            metrics: RefCell::new(None),
            before_write: RefCell::new(None),
            deleting: RefCell::new(None),
            cfg,
            #[cfg(test)]
            fail_syncs: Cell::new(0),
            #[cfg(test)]
            late_sync: Cell::new(None),
        });
        let dir = Rc::new(Directory::open(&inner.cfg.dir).await?);
        let mut c = Committer {
            inner: inner.clone(),
            dir,
            seg: None,
            ahead: None,
            next,
        };
        // The fresh segment must exist (and be durable) before we serve; then retire what
        // recovery found fully final, so the deletion happens within `open`.
        c.create_segment().await?;
        c.commit(Batch::default()).await;
        committer::settle_deletions(&inner).await;
        glommio::spawn_local(async move {
            let r = c.run().await;
            let _ = done_tx.send(r);
        })
        .detach();
        Ok((Spool(inner), Recovered { messages, stats }))
    }

    /// Appends a message record and resolves once a fdatasync covering it has returned
    /// (group commit). Err → the caller answers 452 4.3.1; the message must then be treated as
    /// not accepted.
    pub async fn append_message(&self, msg: &MessageRecord) -> Result<(), SpoolError> {
        let recipients = u32::try_from(msg.recipients.len())
            .map_err(|_| SpoolError::InvalidRecord("too many recipients"))?;
        if recipients == 0 {
            return Err(SpoolError::InvalidRecord("message without recipients"));
        }
        let payload = format::encode_message(msg)?;
        {
            let st = self.0.st.borrow();
            if st.ledger.contains(msg.id) {
                return Err(SpoolError::DuplicateId(msg.queue_id()));
            }
        }
        let effect = Effect::Message {
            id: msg.id,
            recipients,
        };
        let (tx, rx) = oneshot::channel();
        self.push((KIND_MESSAGE, msg.priority), &payload, effect, Some(tx))?;
        rx.await.unwrap_or(Err(SpoolError::Closed))
    }

    /// Same for a state record (used by delivery). Errors without writing anything if the
    /// message is not tracked or has no such recipient. A state for an already-final
    /// recipient is written (it is part of the record) but changes nothing: final is final.
    pub async fn append_state(&self, rec: &StateRecord) -> Result<(), SpoolError> {
        let payload = self.state_payload(rec)?;
        self.submit(KIND_STATE, &payload, Effect::State(rec.clone()))
            .await
    }

    /// The encoded record of a state, or why it cannot be recorded (nothing is written then).
    fn state_payload(&self, rec: &StateRecord) -> Result<rkyv::util::AlignedVec, SpoolError> {
        match self.0.st.borrow().ledger.check_state(rec.id, rec.recipient) {
            StateOutcome::UnknownMessage => return Err(SpoolError::UnknownMessage(rec.queue_id())),
            StateOutcome::NoSuchRecipient => {
                return Err(SpoolError::NoSuchRecipient {
                    id: rec.queue_id(),
                    recipient: rec.recipient,
                });
            }
            StateOutcome::AlreadyFinal | StateOutcome::Applied { .. } => {}
        }
        let payload = format::encode_state(rec)?;
        Ok(payload)
    }

    /// Appends a recipient's new state without waiting for it to be durable: it goes out with
    /// the next group commit, and a failure is logged. For the delivery queue, which loses
    /// nothing if a state record is lost in a crash (the recipient is tried again: at least
    /// once, never lost).
    pub fn append_state_detached(&self, rec: &StateRecord) -> Result<(), SpoolError> {
        let payload = self.state_payload(rec)?;
        self.push((KIND_STATE, 0), &payload, Effect::State(rec.clone()), None)
    }

    /// Holds (`held`) or releases messages, and resolves once that is durable (a group commit
    /// per [`HOLDS_PER_COMMIT`] of them): an operator's hold survives a restart. Messages no
    /// longer tracked (every recipient final) are skipped. The first error, if any, is
    /// returned.
    pub async fn append_holds(&self, ids: &[QueueId], held: bool) -> Result<(), SpoolError> {
        let mut first = Ok(());
        for chunk in ids.chunks(HOLDS_PER_COMMIT) {
            let mut waits = Vec::with_capacity(chunk.len());
            for id in chunk {
                if !self.0.st.borrow().ledger.contains(id.0) {
                    continue;
                }
                let rec = HoldRecord { id: id.0, held };
                let payload = format::encode_hold(&rec)?;
                let (tx, rx) = oneshot::channel();
                self.push((KIND_HOLD, 0), &payload, Effect::Hold(rec), Some(tx))?;
                waits.push(rx);
            }
            for rx in waits {
                if let Err(e) = rx.await.unwrap_or(Err(SpoolError::Closed)) {
                    first = first.and(Err(e));
                }
            }
        }
        first
    }

    /// Whether a message is held (as far as durable records say).
    pub fn is_held(&self, id: QueueId) -> bool {
        self.0.st.borrow().ledger.is_held(id.0)
    }

    async fn submit(&self, kind: u8, payload: &[u8], effect: Effect) -> Result<(), SpoolError> {
        let (tx, rx) = oneshot::channel();
        self.push((kind, 0), payload, effect, Some(tx))?;
        rx.await.unwrap_or(Err(SpoolError::Closed))
    }

    /// Adds a record of `(kind, class byte)` to the open batch and wakes the committer.
    fn push(
        &self,
        (kind, class): (u8, u8),
        payload: &[u8],
        effect: Effect,
        tx: Option<oneshot::Sender<Result<(), SpoolError>>>,
    ) -> Result<(), SpoolError> {
        {
            let mut st = self.0.st.borrow_mut();
            if st.closing {
                return Err(SpoolError::Closed);
            }
            let frame = format::frame_len(payload.len());
            let max = self.0.cfg.max_batch_bytes;
            let need_new = st
                .batches
                .back()
                .is_none_or(|b| !b.buf.is_empty() && b.buf.len() + frame > max);
            if need_new {
                let buf = std::mem::take(&mut st.spare);
                st.batches.push_back(Batch {
                    buf,
                    waiters: Vec::new(),
                    awaited: false,
                });
            }
            let b = st.batches.back_mut().expect("a batch was just ensured");
            let offset = b.buf.len() as u64;
            format::push_frame_class(&mut b.buf, kind, class, payload)?;
            b.awaited |= tx.is_some();
            b.waiters.push(Waiter { tx, effect, offset });
        }
        self.0.wake();
        Ok(())
    }

    /// Reads a queued message back from its segment (for a caller that dropped its copy of the
    /// body to save memory). The record is checked (CRC) as recovery checks it.
    pub async fn read_message(&self, id: QueueId) -> Result<MessageRecord, SpoolError> {
        let location = self.0.st.borrow().ledger.location(id.0);
        let Some((segment, offset, _)) = location else {
            return Err(SpoolError::UnknownMessage(id));
        };
        let path = self.0.cfg.dir.join(segment_file_name(segment));
        let file = BufferedFile::open(&path).await.map_err(io_err)?;
        let head = file
            .read_at(offset, format::FRAME_HEADER_LEN)
            .await
            .map_err(io_err)?;
        let corrupt = |reason: String| SpoolError::Corrupt {
            path: path.clone(),
            offset,
            reason,
        };
        if head.len() < format::FRAME_HEADER_LEN {
            let _ = file.close().await;
            return Err(corrupt("short read".to_owned()));
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let frame = file
            .read_at(offset, format::frame_len(len.min(format::MAX_RECORD_LEN)))
            .await
            .map_err(io_err);
        let _ = file.close().await;
        format::decode_message_at(&frame?, 0).map_err(corrupt)
    }

    /// Calls `f` before each batch is written, from now on: what it writes first (the event
    /// log's lines about the records in the batch) is on disk before the batch is, even if
    /// the process is killed between the two.
    pub fn before_write(&self, f: Rc<dyn Fn()>) {
        *self.0.before_write.borrow_mut() = Some(f);
    }

    /// Records group-commit batch sizes and `fdatasync` latency in `metrics` from now on.
    pub fn attach_metrics(&self, metrics: Rc<ShardMetrics>) {
        *self.0.metrics.borrow_mut() = Some(metrics);
    }

    /// Counters for metrics/tests: commits (fdatasync calls), records committed, bytes.
    pub fn stats(&self) -> SpoolStats {
        self.0.stats.get()
    }

    /// Bytes of the shard's segment files on disk, as the spool wrote them.
    pub fn disk_bytes(&self) -> u64 {
        self.0.st.borrow().seg_bytes.values().sum()
    }

    /// Queued messages/recipients of this shard and its lifetime accounting
    /// (`totals.accepted = delivered + bounced + expired + recipients`).
    pub fn counts(&self) -> SpoolCounts {
        let st = self.0.st.borrow();
        let mut totals = st.ledger.retired();
        totals.add(&st.ledger.live());
        SpoolCounts {
            messages: st.ledger.queued_messages(),
            recipients: totals.queued(),
            totals,
        }
    }

    /// Whether a message is tracked (appended and not yet retired with its segment).
    pub fn contains(&self, id: QueueId) -> bool {
        self.0.st.borrow().ledger.contains(id.0)
    }

    /// The largest queue id recovered or appended; seed a `QueueIdGenerator::resume` with it.
    pub fn last_id(&self) -> Option<QueueId> {
        self.0.st.borrow().ledger.last_id().map(QueueId)
    }

    /// Segment numbers on disk that the spool tracks (including the current one).
    pub fn segments(&self) -> Vec<u64> {
        self.0.st.borrow().ledger.segments().collect()
    }

    /// The shard number.
    pub fn shard(&self) -> u16 {
        self.0.cfg.shard
    }

    /// The shard directory.
    pub fn dir(&self) -> &Path {
        &self.0.cfg.dir
    }

    /// Bytes appended but not yet durable (queued batches, not counting the one being
    /// written): a backpressure signal for the server (answer `452 4.3.1` above a budget).
    pub fn pending_bytes(&self) -> usize {
        self.0.st.borrow().batches.iter().map(|b| b.buf.len()).sum()
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.0.st.borrow().closing
    }

    /// Flushes what is pending, syncs, stops the committer. Appends after close fail.
    pub async fn close(&self) -> Result<(), SpoolError> {
        self.0.st.borrow_mut().closing = true;
        self.0.wake();
        let rx = self.0.done.borrow_mut().take();
        match rx {
            Some(rx) => rx.await.unwrap_or(Err(SpoolError::Closed)),
            None => Ok(()),
        }
    }

    /// Waits until the unlinking of retired segments in progress (if any) has ended; until
    /// then a retired segment's file may still be on disk.
    pub async fn deletions_settled(&self) {
        // A commit that runs meanwhile may start the next deletion: until none runs.
        while self.0.deleting.borrow().is_some() {
            committer::settle_deletions(&self.0).await;
        }
    }

    /// Test hook: the next `n` syncs fail (after their write) as if the disk returned EIO.
    #[cfg(test)]
    pub(crate) fn fail_next_syncs(&self, n: u32) {
        self.0.fail_syncs.set(n);
    }

    /// Test hook: the next `fdatasync` returns 50 ms late (so that the next batch is written
    /// and synced meanwhile), and fails if `fails`.
    #[cfg(test)]
    pub(crate) fn next_sync_late(&self, fails: bool) {
        self.0.late_sync.set(Some(fails));
    }
}

/// Cuts a torn tail found by recovery, unless it is too large to be one unsynced batch (then
/// it is media damage: leave the bytes for inspection; the file is never appended to again).
/// Zeros at the end of the file (a segment filled ahead of use) do not count as tail.
fn cut_tail(cfg: &SpoolConfig, seg: &recovery::SegmentScan) -> Result<(), SpoolError> {
    let interrupted = matches!(seg.stop, Stop::Torn | Stop::ZeroTail);
    let mut tail = seg.file_len - seg.valid_end;
    if !interrupted && tail > cfg.max_batch_bytes as u64 {
        tail = written_end(&seg.path, seg.valid_end)?.saturating_sub(seg.valid_end);
    }
    if !interrupted && tail > cfg.max_batch_bytes as u64 {
        error!(
            path = %seg.path.display(),
            valid_end = seg.valid_end,
            discarded = tail,
            stop = ?seg.stop,
            "spool segment damaged before its end; records after the damage are lost, bytes kept"
        );
        return Ok(());
    }
    if matches!(seg.stop, Stop::ZeroTail) {
        // Zeros written ahead of use (`spool.preallocate`) or never overwritten: not damage.
        debug!(path = %seg.path.display(), valid_end = seg.valid_end, zeros = tail,
            "trimming the zero-filled end of a spool segment");
    } else {
        warn!(path = %seg.path.display(), valid_end = seg.valid_end, discarded = tail, stop = ?seg.stop,
            "truncating torn spool segment tail");
    }
    let f = std::fs::OpenOptions::new().write(true).open(&seg.path)?;
    f.set_len(seg.valid_end)?;
    if cfg.sync == SyncMode::Always {
        f.sync_data()?;
    }
    Ok(())
}

/// The end of the last non-zero byte of `path` at or after `from` (`from` when there is none),
/// read 1 MiB at a time from the end of the file: what a torn batch left before the zeros
/// that were there ahead of it.
fn written_end(path: &Path, from: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let mut end = f.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    while end > from {
        let start = end.saturating_sub(buf.len() as u64).max(from);
        let piece = &mut buf[..(end - start) as usize];
        f.read_exact_at(piece, start)?;
        if let Some(i) = piece.iter().rposition(|&b| b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}
