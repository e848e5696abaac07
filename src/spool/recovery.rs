//! Recovery: reads a shard directory's segments and rebuilds what is queued; also the offline
//! reader behind `mta queue list|count`.
//!
//! What it does: lists `<16 hex>.seg` files in ascending order, checks each header, walks each
//! segment piece by piece with `reader::walk` (the same walker for both callers), feeds the [`Ledger`], applies
//! retire records (leftover segments they list are neither counted nor returned), then loads
//! the queued messages in a second pass so that at most one segment's bytes plus the queued
//! envelopes are in memory, with whole bodies only up to a byte budget (the others keep their
//! header section and are read back from the spool when needed).
//!
//! What it does not do: it never modifies anything. Truncating torn tails, deleting retired or
//! empty segments and syncing is `Spool::open`'s job (`writer.rs`), driven by the
//! [`ShardScan`] returned here. It uses blocking `std::fs`, which is fine before serving.
//!
//! Invariants: a state record for a message not (or no longer) tracked is ignored; the first
//! final state of a recipient wins; a later Deferred overrides an earlier Deferred; a header
//! that is not ours (magic, version, shard, number) is an error, never silently skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tracing::error;

use super::SpoolError;
use super::format::{self, HeaderCheck, Record, Stop};
use super::ledger::{Ledger, StateOutcome};
use super::model::{MessageRecord, QueueId, Recipient, RecipientState, Totals};
use super::reader;

/// What recovery found: every message with at least one non-final recipient, with each
/// recipient's latest state (None = never attempted), plus counts for accounting.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Queued messages, in spool order (segment, then record order).
    pub messages: Vec<RecoveredMessage>,
    /// Counts.
    pub stats: RecoveryStats,
}

/// One queued message found by recovery.
#[derive(Debug, Clone)]
pub struct RecoveredMessage {
    /// The message, owned and deserialized. Its `body` is the whole message when
    /// `body_complete`, else only its header section (the rest stays in the spool, to be read
    /// back when the message is sent).
    pub message: MessageRecord,
    /// `message.body` is the whole message.
    pub body_complete: bool,
    /// Length of the whole message (`Received:` header included).
    pub body_len: usize,
    /// The whole message has octets over 127.
    pub eight_bit: bool,
    /// Latest state of each recipient (index = recipient index); None = never attempted.
    pub states: Vec<Option<RecipientState>>,
    /// Segment holding the message record.
    pub segment: u64,
    /// Held by an operator: not delivered until released.
    pub held: bool,
}

impl RecoveredMessage {
    /// The message's queue id.
    pub fn queue_id(&self) -> QueueId {
        self.message.queue_id()
    }
    /// Recipients that are not final yet: (index, recipient, latest state if Deferred).
    pub fn pending_recipients(
        &self,
    ) -> impl Iterator<Item = (u32, &Recipient, Option<&RecipientState>)> {
        self.message
            .recipients
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let s = self.states.get(i).and_then(Option::as_ref);
                (!s.is_some_and(RecipientState::is_final)).then_some((i as u32, r, s))
            })
    }
}

/// Recovery counters. `recipients_total`, `delivered`, `bounced`, `expired` count what is
/// found in the segments still on disk; `retired` is what already-deleted segments held (from
/// the last retire record); [`RecoveryStats::lifetime`] adds both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Segment files found.
    pub segments: usize,
    /// Valid records read.
    pub records: u64,
    /// Bytes after the end of valid data, summed over segments (cut off by `Spool::open`
    /// unless too large to be a torn write; see `docs/SPOOL_FORMAT.md`).
    pub truncated_bytes: u64,
    /// Recipients of the message records in the spool.
    pub recipients_total: u64,
    /// Of those, delivered.
    pub delivered: u64,
    /// Of those, bounced.
    pub bounced: u64,
    /// Of those, expired.
    pub expired: u64,
    /// Totals of segments already retired (deleted) on this shard, cumulative.
    pub retired: Totals,
}

impl RecoveryStats {
    /// Lifetime accounting of the shard: retired plus found.
    pub fn lifetime(&self) -> Totals {
        let mut t = self.retired;
        t.add(&self.found());
        t
    }
    /// Totals of what is found in the segments on disk.
    pub fn found(&self) -> Totals {
        Totals {
            accepted: self.recipients_total,
            delivered: self.delivered,
            bounced: self.bounced,
            expired: self.expired,
        }
    }
    /// Recipients still queued.
    pub fn queued_recipients(&self) -> u64 {
        self.found().queued()
    }
    fn add(&mut self, o: &RecoveryStats) {
        self.segments += o.segments;
        self.records += o.records;
        self.truncated_bytes += o.truncated_bytes;
        self.recipients_total += o.recipients_total;
        self.delivered += o.delivered;
        self.bounced += o.bounced;
        self.expired += o.expired;
        self.retired.add(&o.retired);
    }
}

/// What the offline reader returns: queued messages of every shard and the summed totals.
#[derive(Debug, Default)]
pub struct OfflineSpool {
    /// Queued messages, shard by shard.
    pub messages: Vec<RecoveredMessage>,
    /// Summed over shards.
    pub stats: RecoveryStats,
}

/// Reads every shard dir (`shard-<n>`) under `spool_dir` without modifying anything (no
/// truncation, no deletion) and returns what is queued and the accounting totals. Safe to run
/// while the server runs: a record being written is just not seen yet.
pub fn read_offline(spool_dir: &Path) -> Result<OfflineSpool, SpoolError> {
    let mut shards = Vec::new();
    for e in std::fs::read_dir(spool_dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(n) = name.to_str().and_then(|s| s.strip_prefix("shard-")) else {
            continue;
        };
        if let (Ok(n), true) = (n.parse::<u32>(), e.file_type()?.is_dir()) {
            shards.push((n, e.path()));
        }
    }
    shards.sort();
    let mut out = OfflineSpool::default();
    for (n, dir) in shards {
        let mut scan = scan_shard(&dir, n)?;
        out.messages.extend(load_queued(&mut scan, u64::MAX)?);
        out.stats.add(&scan.stats);
    }
    Ok(out)
}

/// One segment file as found.
#[derive(Debug, Clone)]
pub(crate) struct SegmentScan {
    pub(crate) number: u64,
    pub(crate) path: PathBuf,
    pub(crate) file_len: u64,
    /// End of valid data (0 for a segment whose header never reached the disk).
    pub(crate) valid_end: u64,
    pub(crate) stop: Stop,
    /// The header never reached the disk: no records, delete it.
    pub(crate) empty: bool,
}

/// Everything recovery learned about one shard directory.
#[derive(Debug)]
pub(crate) struct ShardScan {
    pub(crate) ledger: Ledger,
    pub(crate) segments: Vec<SegmentScan>,
    /// Segments listed by a durable retire record but still present: delete, never count.
    pub(crate) leftovers: Vec<u64>,
    states: HashMap<u64, Vec<Option<RecipientState>>>,
    pub(crate) stats: RecoveryStats,
}

/// Parses a segment file name (`<16 hex digits>.seg`).
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    (stem.len() == 16 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(stem, 16).ok())
        .flatten()
}

/// The file name of segment `n`.
pub fn segment_file_name(n: u64) -> String {
    format!("{n:016x}.seg")
}

/// Segment numbers present in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(n) = e.file_name().to_str().and_then(parse_segment_name) {
            v.push((n, e.path()));
        }
    }
    v.sort();
    Ok(v)
}

/// Walks every segment of a shard dir. Modifies nothing.
pub(crate) fn scan_shard(dir: &Path, shard: u32) -> Result<ShardScan, SpoolError> {
    let mut ledger = Ledger::default();
    let mut segments = Vec::new();
    let mut states: HashMap<u64, Vec<Option<RecipientState>>> = HashMap::new();
    let mut leftovers: Vec<u64> = Vec::new();
    let mut retired = None;
    let mut stats = RecoveryStats::default();
    for (number, path) in list_segments(dir)? {
        let file = std::fs::File::open(&path)?;
        let file_len = file.metadata()?.len();
        stats.segments += 1;
        match format::check_header(&reader::header(&file)?, shard, number) {
            HeaderCheck::Missing => {
                segments.push(SegmentScan {
                    number,
                    path,
                    file_len,
                    valid_end: 0,
                    stop: Stop::Clean,
                    empty: true,
                });
                continue;
            }
            HeaderCheck::Bad(reason) => {
                return Err(SpoolError::Corrupt {
                    path,
                    offset: 0,
                    reason,
                });
            }
            HeaderCheck::Valid => {}
        }
        ledger.ensure_segment(number);
        let (valid_end, stop) = reader::walk(&file, file_len, |rec| {
            stats.records += 1;
            match rec {
                Record::Message {
                    offset,
                    id,
                    recipients,
                } => {
                    if ledger.add_message(number, offset, id, recipients) {
                        states.insert(id, vec![None; recipients as usize]);
                    } else {
                        error!(
                            segment = number,
                            offset,
                            id = %QueueId(id),
                            "duplicate queue id in spool; keeping the first record"
                        );
                    }
                }
                Record::Move {
                    offset,
                    id,
                    recipients,
                } => {
                    // A message copied forward: re-homed if its old segment is still here,
                    // else tracked from here on (its old segment's retire record, written
                    // after the move, did not count it).
                    if ledger.move_message(id, number, offset).is_none()
                        && ledger.add_message(number, offset, id, recipients)
                    {
                        states.insert(id, vec![None; recipients as usize]);
                    }
                }
                Record::State { rec, .. } => {
                    if let StateOutcome::Applied { .. } = ledger.apply_state(number, &rec)
                        && let Some(v) = states.get_mut(&rec.id)
                    {
                        v[rec.recipient as usize] = Some(rec.state);
                    }
                }
                Record::Hold { rec, .. } => {
                    ledger.apply_hold(number, rec.id, rec.held);
                }
                Record::Retire { rec, .. } => {
                    leftovers.extend(rec.segments.iter().copied());
                    retired = Some(rec.totals);
                }
            }
        })?;
        stats.truncated_bytes += file_len - valid_end;
        segments.push(SegmentScan {
            number,
            path,
            file_len,
            valid_end,
            stop,
            empty: false,
        });
    }
    leftovers.sort_unstable();
    leftovers.dedup();
    leftovers.retain(|n| segments.iter().any(|s| s.number == *n));
    for &n in &leftovers {
        for id in ledger.messages_in(n).to_vec() {
            states.remove(&id);
        }
        ledger.remove_segment(n, false);
    }
    ledger.set_retired(retired.unwrap_or_default());
    let live = ledger.live();
    stats.recipients_total = live.accepted;
    stats.delivered = live.delivered;
    stats.bounced = live.bounced;
    stats.expired = live.expired;
    stats.retired = ledger.retired();
    Ok(ShardScan {
        ledger,
        segments,
        leftovers,
        states,
        stats,
    })
}

/// Second pass: deserializes the queued messages (re-reading only segments that hold some).
/// Whole bodies are kept while their sum stays within `body_budget`; past it a message keeps
/// only its header section.
pub(crate) fn load_queued(
    scan: &mut ShardScan,
    body_budget: u64,
) -> Result<Vec<RecoveredMessage>, SpoolError> {
    let mut out = Vec::new();
    let mut bodies: u64 = 0;
    for seg in &scan.segments {
        let queued: Vec<(u64, u64)> = scan
            .ledger
            .messages_in(seg.number)
            .iter()
            .filter_map(|id| match scan.ledger.location(*id) {
                Some((_, off, true)) => Some((*id, off)),
                _ => None,
            })
            .collect();
        if queued.is_empty() {
            continue;
        }
        let file = std::fs::File::open(&seg.path)?;
        for (id, offset) in queued {
            let frame = reader::frame_at(&file, offset)?;
            let mut message =
                format::decode_message_at(&frame, 0).map_err(|reason| SpoolError::Corrupt {
                    path: seg.path.clone(),
                    offset,
                    reason: format!("segment changed during recovery: {reason}"),
                })?;
            let body_len = message.body.len();
            let eight_bit = !message.body.is_ascii();
            let body_complete = bodies.saturating_add(body_len as u64) <= body_budget;
            if body_complete {
                bodies += body_len as u64;
            } else {
                message.body.truncate(header_len(&message.body));
                message.body.shrink_to_fit();
            }
            // Taken, not copied: the states of a million recipients are not held twice.
            let states = scan.states.remove(&id).unwrap_or_default();
            out.push(RecoveredMessage {
                message,
                body_complete,
                body_len,
                eight_bit,
                states,
                segment: seg.number,
                held: scan.ledger.is_held(id),
            });
        }
    }
    Ok(out)
}

/// Length of a message's header section, its ending empty line included (all of it if
/// there is no empty line).
fn header_len(body: &[u8]) -> usize {
    memchr::memmem::find(body, b"\r\n\r\n").map_or(body.len(), |i| i + 4)
}

impl ShardScan {
    /// Segments `Spool::open` retires right away: every recipient final and not pinned.
    pub(crate) fn retirable(&self) -> Vec<u64> {
        self.ledger.deletable_segments(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Spool, SpoolConfig};

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .expect("executor")
            .run(f)
    }

    fn message(id: u64, body: &str) -> MessageRecord {
        MessageRecord {
            id,
            reverse_path: "a@example.com".into(),
            mail_params: vec![],
            recipients: vec![Recipient::new("b@example.net".to_owned())],
            arrival_unix_ms: 1_700_000_000_000,
            client_addr: "192.0.2.1:25".into(),
            helo: "client.example".into(),
            tls: None,
            auth: None,
            campaign: None,
            tenant: None,
            body: body.as_bytes().to_vec(),
            priority: 0,
        }
    }

    #[test]
    fn bodies_past_the_budget_keep_only_their_header() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig::new(tmp.path().join("shard-0"), 0);
        let big = format!("Subject: s\r\nX: y\r\n\r\n{}\r\n", "b".repeat(1000));
        let eight = format!("Subject: \u{e9}\r\n\r\n{}\r\n", "c".repeat(1000));
        run(async {
            let (spool, _) = Spool::open(cfg.clone()).await.unwrap();
            for (id, body) in [(1, &big), (2, &big), (3, &eight)] {
                spool.append_message(&message(id, body)).await.unwrap();
            }
            spool.close().await.unwrap();
        });
        let budget = SpoolConfig {
            recovery_body_budget: 1500,
            ..cfg.clone()
        };
        let got = run(async {
            let (spool, rec) = Spool::open(budget).await.unwrap();
            spool.close().await.unwrap();
            rec.messages
        });
        let summary: Vec<(u64, bool, usize, bool)> = got
            .iter()
            .map(|m| (m.message.id, m.body_complete, m.body_len, m.eight_bit))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, true, big.len(), false),
                (2, false, big.len(), false),
                (3, false, eight.len(), true),
            ]
        );
        assert_eq!(got[0].message.body, big.as_bytes());
        assert_eq!(got[1].message.body, b"Subject: s\r\nX: y\r\n\r\n");
        assert!(got[2].message.body.ends_with(b"\r\n\r\n"));
        // Without a budget everything is whole.
        let all = run(async {
            let (spool, rec) = Spool::open(cfg).await.unwrap();
            spool.close().await.unwrap();
            rec.messages
        });
        assert!(all.iter().all(|m| m.body_complete));
    }
}
