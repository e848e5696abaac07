//! The committer task of one shard's spool: group commit, segments, retirement.
//!
//! What it does: takes the next batch of the spool's pending queue (which one, and when:
//! `pending.rs`), writes it at the segment's tail with one write (a `pwrite` on the shard's
//! thread up to 128 KiB, a ring `write_at` beyond, short writes continued) after calling the
//! `before_write` hook (the event log writes its buffer), starts its `fdatasync`, and once that
//! returned applies the batch to the ledger and completes every waiter. While one batch's
//! `fdatasync` runs, the next batch of the same segment is written and its own `fdatasync`
//! started (two in flight at most, and only for a batch somebody waits for), so a record waits
//! for one sync that covers it, not for the one before it too. Rolls to a new segment past the
//! segment size (made ahead by `new_segment` once the current one is a quarter full,
//! and filled with zeros; three quarters without them); retires segments whose recipients are
//! all final (retire record first, then unlink and directory sync in a task beside the commits,
//! one deletion at a time).
//!
//! What it does not do: no framing of records (the handle in `writer.rs` does), no
//! copy-forward decisions (`forward.rs`).
//!
//! Invariants: the same as the spool's (`writer.rs`): a waiter hears `Ok` only after the sync
//! covering it; a failed segment is never written again; no `RefCell` borrow across `.await`.
//! Batches complete in the order they were written; a second batch only overlaps the first when
//! both go to the same open segment, the first does not fill it, and neither carries a retire
//! record or moves; when the first fails, the second fails with it (its sync says nothing
//! about a segment whose earlier write was lost).

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use super::in_flight::{InFlight, Next, Retiring, SyncState};
use super::new_segment::{self, Ahead};
use super::pending::{next_follower, next_work};
use super::*;

/// Batches up to this size are written with a plain `pwrite` on the shard's thread: a copy
/// into the page cache of a few microseconds, where the ring hands a buffered write to a
/// kernel worker thread and the shard hears back a wake-up later (0.1-0.5 ms measured under
/// load). Larger batches still go through the ring, so one never holds the shard long.
const INLINE_WRITE_MAX: usize = 128 * 1024;

pub(super) struct OpenSegment {
    number: u64,
    /// Shared with the `fdatasync` tasks in flight.
    file: Rc<BufferedFile>,
    /// The same file, for small writes on the shard's thread (see [`INLINE_WRITE_MAX`]).
    direct: std::fs::File,
    tail: u64,
    /// Whether any batch was committed to it (an abandoned segment without is removed).
    committed: bool,
}

pub(super) struct Committer {
    pub(super) inner: Rc<Inner>,
    pub(super) dir: Rc<Directory>,
    pub(super) seg: Option<OpenSegment>,
    /// The next segment, being made ahead of the roll (see `new_segment`).
    pub(super) ahead: Option<Ahead>,
    pub(super) next: u64,
}

pub(super) fn io_err(e: glommio::GlommioError<()>) -> io::Error {
    e.into()
}

impl Committer {
    pub(super) async fn run(mut self) -> Result<(), SpoolError> {
        let mut flight: Option<InFlight> = None;
        loop {
            let next = match flight.as_mut() {
                None => next_work(&self.inner)
                    .await
                    .map_or(Next::Close, Next::Batch),
                Some(f) => {
                    let follow = self.can_follow(f);
                    let inner = &self.inner;
                    futures_lite::future::or(
                        async {
                            f.synced().await;
                            Next::Synced
                        },
                        next_follower(inner, follow),
                    )
                    .await
                }
            };
            match next {
                Next::Batch(batch) => {
                    let started = self.start(batch).await;
                    if let Some(first) = flight.take() {
                        let ok = self.finish(first, false).await;
                        match started {
                            Some(second) if !ok => {
                                self.finish(second, true).await;
                            }
                            other => flight = other,
                        }
                    } else {
                        flight = started;
                    }
                }
                Next::Synced => {
                    if let Some(f) = flight.take() {
                        self.finish(f, false).await;
                    }
                }
                Next::Close => break,
            }
        }
        settle_deletions(&self.inner).await;
        if let Some(ahead) = self.ahead.take()
            && let Ok(unused) = ahead.take().await
        {
            new_segment::discard(&self.inner, unused).await;
        }
        if let Some(seg) = self.seg.take() {
            close_file(seg.file).await?;
        }
        Ok(())
    }

    /// Whether a batch may be written and synced while `first`'s sync runs: same open segment,
    /// which `first` does not fill, and no retire record or move in `first`.
    fn can_follow(&self, first: &InFlight) -> bool {
        let Ok((segment, _, end)) = first.placed else {
            return false;
        };
        self.seg.as_ref().is_some_and(|s| s.number == segment)
            && end < self.inner.cfg.segment_size
            && first.retiring.listed.is_empty()
            && first.forwarding.moves.is_empty()
    }

    /// Opens the next segment for writing: the one made ahead if it is ready (waiting for it
    /// if it is still being made), else a new one made now.
    pub(super) async fn create_segment(&mut self) -> Result<(), io::Error> {
        let ahead = match self.ahead.take() {
            Some(ahead) => ahead.take().await.map_err(|e| {
                warn!(error = %e, shard = self.inner.cfg.shard, "making the next spool segment failed");
            }).ok(),
            None => None,
        };
        let made = match ahead {
            Some(made) => made,
            None => {
                let number = self.next;
                self.next += 1;
                new_segment::make(self.inner.clone(), self.dir.clone(), number).await?
            }
        };
        let number = made.number;
        self.inner.bump(|s| s.segments_created += 1);
        self.inner.st.borrow_mut().ledger.ensure_segment(number);
        {
            let mut st = self.inner.st.borrow_mut();
            st.current = Some(number);
        }
        self.seg = Some(OpenSegment {
            number,
            file: Rc::new(made.file),
            direct: made.direct,
            tail: HEADER_LEN as u64,
            committed: false,
        });
        Ok(())
    }

    /// Starts making the next segment in a task of its own once the current one is a quarter
    /// full (three quarters when it gets no zeros: see `new_segment`).
    fn prepare_next_segment(&mut self) {
        let size = self.inner.cfg.segment_size;
        let at = match self.inner.cfg.fills_with_zeros() {
            true => size / 4,
            false => size - size / 4,
        };
        if self.ahead.is_some() || self.seg.as_ref().is_none_or(|s| s.tail < at) {
            return;
        }
        let number = self.next;
        self.next += 1;
        self.ahead = Some(Ahead::start(self.inner.clone(), self.dir.clone(), number));
    }

    /// Writes and syncs one batch (plus a retire record if segments await deletion), then
    /// completes its waiters and performs deletions. Never fails: errors go to the waiters.
    pub(super) async fn commit(&mut self, batch: Batch) {
        if let Some(f) = self.start(batch).await {
            self.finish(f, false).await;
        }
    }

    /// Adds the retire record and moves to `batch`, writes it at the tail and starts its
    /// `fdatasync`. None when there is nothing to write.
    async fn start(&mut self, mut batch: Batch) -> Option<InFlight> {
        let retiring = self.add_retire_record(&mut batch);
        if batch.buf.is_empty() {
            return None;
        }
        let forwarding = self.add_forwarding(&mut batch).await;
        let n_records = batch.waiters.len() as u64 + u64::from(!retiring.listed.is_empty());
        let before = self.inner.before_write.borrow().clone();
        if let Some(f) = before {
            f();
        }
        let (placed, sync) = match self.write_batch(&batch.buf).await {
            Ok((placed, sync)) => (Ok(placed), sync),
            Err(e) => (Err(e), SyncState::Skipped),
        };
        Some(InFlight {
            batch,
            retiring,
            forwarding,
            n_records,
            placed,
            sync,
        })
    }

    /// Waits for `f`'s sync, then applies it to the ledger and answers its waiters (or fails
    /// them and abandons the segment). `doomed`: an earlier batch of the same segment failed,
    /// so this one fails whatever its own sync said. Returns whether the batch is durable.
    async fn finish(&mut self, mut f: InFlight, doomed: bool) -> bool {
        f.synced().await;
        let synced = match std::mem::replace(&mut f.sync, SyncState::Skipped) {
            SyncState::Done(Ok(took)) => {
                self.inner.bump(|s| s.commits += 1);
                if let Some(m) = self.inner.metrics.borrow().as_ref() {
                    m.fdatasync_seconds.observe(took.as_secs_f64());
                }
                Ok(())
            }
            SyncState::Done(Err(e)) => Err(e),
            SyncState::Skipped | SyncState::Running(_) => Ok(()),
        };
        let placed_segment = f.placed.as_ref().ok().map(|p| p.0);
        let result = match (f.placed, synced) {
            _ if doomed => Err(io::Error::other(
                "an earlier batch of this segment failed to sync",
            )),
            (Ok(placed), Ok(())) => Ok(placed),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        };
        let (mut batch, retiring, forwarding) = (f.batch, f.retiring, f.forwarding);
        let ok = result.is_ok();
        match result {
            Ok((segment, base, end)) => {
                if let Some(seg) = self.seg.as_mut().filter(|s| s.number == segment) {
                    seg.committed = true;
                }
                self.inner.bump(|s| {
                    s.batches += 1;
                    s.records += f.n_records;
                    s.bytes += batch.buf.len() as u64;
                });
                if let Some(m) = self.inner.metrics.borrow().as_ref() {
                    m.group_commit_batch.observe(f.n_records as f64);
                }
                let mut candidates = vec![];
                {
                    let mut st = self.inner.st.borrow_mut();
                    st.retire_blocked = false;
                    // Moves first: they come first in the batch (see `forward`).
                    for (id, at) in &forwarding.moves {
                        if let Some(changed) = st.ledger.move_message(*id, segment, base + at) {
                            candidates.extend(changed);
                        }
                    }
                    for w in batch.waiters.drain(..) {
                        let r = match w.effect {
                            Effect::Message { id, recipients } => {
                                if st
                                    .ledger
                                    .add_message(segment, base + w.offset, id, recipients)
                                {
                                    Ok(())
                                } else {
                                    Err(SpoolError::DuplicateId(QueueId(id)))
                                }
                            }
                            Effect::State(rec) => {
                                if let Some((home, _, _)) = st.ledger.location(rec.id) {
                                    candidates.push(home);
                                }
                                st.ledger.apply_state(segment, &rec);
                                Ok(())
                            }
                            Effect::Hold(rec) => {
                                if st.ledger.apply_hold(segment, rec.id, rec.held) {
                                    Ok(())
                                } else {
                                    Err(SpoolError::UnknownMessage(QueueId(rec.id)))
                                }
                            }
                        };
                        answer(w.tx, r);
                    }
                }
                if !retiring.listed.is_empty() {
                    candidates.extend(self.delete_segments(&retiring).await);
                }
                self.prepare_next_segment();
                // Only the last batch in flight can end past the segment size (see
                // `can_follow`), so nothing else still writes to the file sealed here.
                if end >= self.inner.cfg.segment_size
                    && self.seg.as_ref().is_some_and(|s| s.number == segment)
                {
                    candidates.push(segment);
                    self.seal().await;
                }
                self.queue_retirements(candidates);
            }
            Err(e) => {
                warn!(error = %e, shard = self.inner.cfg.shard, "spool commit failed; abandoning segment");
                self.inner.bump(|s| s.failed_batches += 1);
                let segment = placed_segment.or(self.seg.as_ref().map(|s| s.number));
                let name = segment.map_or_else(|| "(new)".to_string(), segment_file_name);
                for w in batch.waiters.drain(..) {
                    let msg = format!("spool commit to segment {name} failed: {e}");
                    answer(w.tx, Err(SpoolError::Io(io::Error::new(e.kind(), msg))));
                }
                {
                    let mut st = self.inner.st.borrow_mut();
                    st.retire_blocked = true;
                    st.retire_queue.extend(retiring.new.iter().copied());
                    st.lingering
                        .extend(retiring.listed.iter().filter(|n| !retiring.new.contains(n)));
                }
                self.abandon().await;
                self.queue_retirements(segment.into_iter().collect());
            }
        }
        batch.buf.clear();
        let mut st = self.inner.st.borrow_mut();
        if batch.buf.capacity() <= self.inner.cfg.max_batch_bytes * 2 {
            st.spare = batch.buf;
        }
        ok
    }

    /// Takes the retire queue and appends the retire record to the batch (naming the new
    /// segments plus the lingering ones; totals add only the new ones).
    fn add_retire_record(&self, batch: &mut Batch) -> Retiring {
        let mut st = self.inner.st.borrow_mut();
        if st.retire_queue.is_empty() {
            return Retiring::default();
        }
        let mut new = std::mem::take(&mut st.retire_queue);
        new.sort_unstable();
        new.dedup();
        let mut totals = st.ledger.retired();
        for s in &new {
            totals.add(&st.ledger.segment_totals(*s));
        }
        let mut listed = new.clone();
        listed.append(&mut st.lingering);
        listed.sort_unstable();
        listed.dedup();
        let rec = RetireRecord {
            segments: listed.clone(),
            totals,
        };
        let ok = format::encode_retire(&rec)
            .and_then(|p| format::push_frame(&mut batch.buf, KIND_RETIRE, &p));
        if let Err(e) = ok {
            error!(error = %e, "cannot encode retire record");
            st.lingering = listed.into_iter().filter(|n| !new.contains(n)).collect();
            st.retire_queue = new;
            return Retiring::default();
        }
        Retiring { new, listed }
    }

    /// Writes `buf` at the tail of the current segment (creating one if needed) and starts its
    /// `fdatasync`. Returns (segment, offset where `buf` starts, offset past it) and the sync.
    async fn write_batch(&mut self, buf: &[u8]) -> io::Result<((u64, u64, u64), SyncState)> {
        if self.seg.is_none() {
            self.create_segment().await?;
        }
        let seg = self.seg.as_mut().expect("segment just ensured");
        let base = seg.tail;
        if buf.len() <= INLINE_WRITE_MAX {
            seg.direct.write_all_at(buf, base)?;
        } else {
            write_all(&seg.file, buf, base).await?;
        }
        seg.tail += buf.len() as u64;
        // A segment filled with zeros ahead of use is already longer than its tail.
        let mut st = self.inner.st.borrow_mut();
        let bytes = st.seg_bytes.entry(seg.number).or_insert(0);
        *bytes = (*bytes).max(seg.tail);
        drop(st);
        #[cfg(test)]
        if self.inner.fail_syncs.get() > 0 {
            self.inner.fail_syncs.set(self.inner.fail_syncs.get() - 1);
            return Err(io::Error::other("injected fdatasync failure"));
        }
        #[cfg(test)]
        let late = self.inner.take_late_sync();
        #[cfg(not(test))]
        let late: Option<bool> = None;
        let sync = if self.inner.cfg.sync == SyncMode::Always {
            let file = seg.file.clone();
            SyncState::Running(glommio::spawn_local(async move {
                if let Some(fails) = late {
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                    if fails {
                        return Err(io::Error::other("injected fdatasync failure"));
                    }
                }
                let started = Instant::now();
                file.fdatasync().await.map_err(io_err)?;
                Ok(started.elapsed())
            }))
        } else {
            SyncState::Skipped
        };
        Ok(((seg.number, base, seg.tail), sync))
    }

    /// The current segment is full: the next batch goes to a new one.
    /// Closes the current segment; the next batch opens a new one (and copies the few open
    /// messages of old segments forward into it, see `forward`).
    async fn seal(&mut self) {
        if let Some(seg) = self.seg.take()
            && let Err(e) = close_file(seg.file).await
        {
            warn!(error = %e, segment = seg.number, "closing sealed spool segment failed");
        }
        self.inner.st.borrow_mut().current = None;
    }

    /// After a failed write/sync: never touch this segment again. Removed if nothing in it
    /// was ever acknowledged, kept for recovery otherwise.
    async fn abandon(&mut self) {
        let Some(seg) = self.seg.take() else { return };
        self.inner.st.borrow_mut().current = None;
        if !seg.committed {
            match seg.file.remove().await {
                Ok(()) => {
                    let mut st = self.inner.st.borrow_mut();
                    st.ledger.remove_segment(seg.number, true);
                    st.seg_bytes.remove(&seg.number);
                }
                Err(e) => {
                    warn!(error = %e, segment = seg.number, "cannot remove abandoned segment")
                }
            }
        }
        let _ = close_file(seg.file).await;
    }

    /// Queues the deletable ones among `candidates` for retirement.
    fn queue_retirements(&self, candidates: Vec<u64>) {
        let mut st = self.inner.st.borrow_mut();
        for c in candidates {
            if Some(c) != st.current && st.ledger.is_deletable(c) && !st.retire_queue.contains(&c) {
                st.retire_queue.push(c);
            }
        }
        if !st.retire_queue.is_empty() {
            drop(st);
            self.inner.wake();
        }
    }

    /// The retire record is durable: forget the newly retired segments and start unlinking
    /// every listed one beside the commits (see [`unlink_segments`]). Returns segments whose
    /// pins dropped to zero (next candidates).
    async fn delete_segments(&mut self, r: &Retiring) -> Vec<u64> {
        let mut unpinned = Vec::new();
        for &n in &r.new {
            unpinned.extend(self.inner.st.borrow_mut().ledger.remove_segment(n, true));
        }
        // One deletion at a time: the previous one ends before the next starts.
        settle_deletions(&self.inner).await;
        let task = glommio::spawn_local(unlink_segments(
            self.inner.clone(),
            self.dir.clone(),
            r.listed.clone(),
        ));
        *self.inner.deleting.borrow_mut() = Some(task);
        unpinned
    }
}

/// Waits until the segment deletion in progress (if any) has ended.
pub(super) async fn settle_deletions(inner: &Inner) {
    let task = inner.deleting.borrow_mut().take();
    if let Some(task) = task {
        task.await;
    }
}

/// Unlinks retired segments and syncs the directory. Runs as a task of its own beside the
/// committer: unlinking a full 64 MiB segment and syncing the directory took 50 ms on a busy
/// disk, a stall that every session waiting for a commit paid when it ran inside the commit.
/// Their retire record is durable already, so a crash part-way leaves files that recovery
/// deletes uncounted; a failed unlink names the segment in the next retire record again.
async fn unlink_segments(inner: Rc<Inner>, dir: Rc<Directory>, listed: Vec<u64>) {
    for n in listed {
        let path = inner.cfg.dir.join(segment_file_name(n));
        let r = async {
            let f = BufferedFile::open(&path).await.map_err(io_err)?;
            let r = f.remove().await.map_err(io_err);
            let _ = f.close().await;
            r
        }
        .await;
        match r {
            Ok(()) => {
                inner.bump(|s| s.segments_deleted += 1);
                inner.st.borrow_mut().seg_bytes.remove(&n);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                inner.st.borrow_mut().seg_bytes.remove(&n);
            }
            // Named again by the next retire record; recovery deletes it uncounted.
            Err(e) => {
                warn!(error = %e, segment = n, "cannot delete retired spool segment");
                inner.st.borrow_mut().lingering.push(n);
            }
        }
    }
    if inner.cfg.sync == SyncMode::Always
        && let Err(e) = dir.sync().await
    {
        warn!(error = %e, "spool directory sync after deletion failed");
    }
}

/// Closes a segment file once no `fdatasync` task holds it any more (they have all returned
/// when this is called); a handle still shared is dropped instead.
async fn close_file(file: Rc<BufferedFile>) -> io::Result<()> {
    match Rc::try_unwrap(file) {
        Ok(file) => file.close().await.map_err(io_err),
        Err(_) => Ok(()),
    }
}

/// `write_at` until all of `data` is written (continuing short writes). `write_at` consumes
/// its buffer, so each call gets a copy of what is left; the caller keeps `data` for reuse.
async fn write_all(file: &BufferedFile, data: &[u8], mut pos: u64) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        let n = file
            .write_at(data[done..].to_vec(), pos)
            .await
            .map_err(io_err)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "segment write returned 0",
            ));
        }
        done += n;
        pos += n as u64;
    }
    Ok(())
}
