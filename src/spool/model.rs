//! Spool data model: queue ids and the records stored in segments.
//!
//! What it does: defines [`QueueId`] and its generator, and the rkyv-archived record payloads
//! ([`MessageRecord`] = kind 1, [`StateRecord`] = kind 2, [`RetireRecord`] = kind 3), plus
//! small accessors the server and delivery code need, and the accounting [`Totals`].
//!
//! What it does not do: no I/O, no framing (see `format.rs`), no clock reads (the caller passes
//! `now`).
//!
//! Invariants:
//! - A `QueueId` is `ms << 22 | shard << 12 | counter` with `ms` = milliseconds since
//!   2020-01-01T00:00:00Z (42 bits), `shard` < 1024 (10 bits), `counter` < 4096 (12 bits), so
//!   ids of one shard are strictly increasing and ids of different shards never collide.
//! - Changing any archived type here changes the on-disk format: bump
//!   `format::FORMAT_VERSION` and document it in `docs/SPOOL_FORMAT.md`.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rkyv::{Archive, Deserialize, Serialize};

/// Unix time of 2020-01-01T00:00:00Z in milliseconds: the epoch of [`QueueId`] timestamps.
pub const QUEUE_ID_EPOCH_UNIX_MS: u64 = 1_577_836_800_000;
/// Number of shards a [`QueueId`] can name (10 bits).
pub const MAX_SHARDS: u16 = 1 << SHARD_BITS;

const SHARD_BITS: u32 = 10;
const COUNTER_BITS: u32 = 12;
const MS_BITS: u32 = 42;
const COUNTER_MAX: u16 = (1 << COUNTER_BITS) - 1;
const MS_MAX: u64 = (1 << MS_BITS) - 1;

/// Process-unique, restart-unique queue id: 42 bits of milliseconds since 2020-01-01T00:00:00Z,
/// 10 bits shard, 12 bits counter. Displayed as 16 upper-case hex digits; `FromStr` parses that
/// (either case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u64);

impl QueueId {
    /// Builds an id from its parts (each part is masked to its width).
    pub fn from_parts(ms_since_epoch: u64, shard: u16, counter: u16) -> Self {
        QueueId(
            (ms_since_epoch & MS_MAX) << (SHARD_BITS + COUNTER_BITS)
                | (u64::from(shard) & u64::from(MAX_SHARDS - 1)) << COUNTER_BITS
                | u64::from(counter & COUNTER_MAX),
        )
    }
    /// Milliseconds since 2020-01-01T00:00:00Z.
    pub fn ms_since_epoch(self) -> u64 {
        self.0 >> (SHARD_BITS + COUNTER_BITS)
    }
    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(self) -> u64 {
        self.ms_since_epoch() + QUEUE_ID_EPOCH_UNIX_MS
    }
    /// The shard that generated this id.
    pub fn shard(self) -> u16 {
        ((self.0 >> COUNTER_BITS) & u64::from(MAX_SHARDS - 1)) as u16
    }
    /// The per-millisecond counter.
    pub fn counter(self) -> u16 {
        (self.0 & u64::from(COUNTER_MAX)) as u16
    }
}

impl QueueId {
    /// The 16 upper-case hex digits of the id (what `Display` prints), without formatting
    /// machinery.
    pub fn hex(self) -> [u8; 16] {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = DIGITS[((self.0 >> (60 - 4 * i)) & 0xF) as usize];
        }
        out
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        f.pad(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

/// Error returned when a string is not 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid queue id {0:?}: expected 16 hex digits")]
pub struct ParseQueueIdError(pub String);

impl FromStr for QueueId {
    type Err = ParseQueueIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseQueueIdError(s.to_owned()));
        }
        u64::from_str_radix(s, 16)
            .map(QueueId)
            .map_err(|_| ParseQueueIdError(s.to_owned()))
    }
}

/// Generates strictly increasing [`QueueId`]s for one shard.
///
/// Restart-unique as long as the clock does not go back across a restart; to be safe against
/// that, seed it with [`QueueIdGenerator::resume`] from [`crate::spool::Spool::last_id`].
#[derive(Debug, Clone)]
pub struct QueueIdGenerator {
    shard: u16,
    last_ms: u64,
    counter: u16,
}

impl QueueIdGenerator {
    /// A generator for `shard`. Panics if `shard >= 1024` (a configuration bug: the id has 10
    /// shard bits; `Spool::open` rejects such shards with an error first).
    pub fn new(shard: u16) -> Self {
        assert!(
            shard < MAX_SHARDS,
            "shard {shard} does not fit in a queue id"
        );
        QueueIdGenerator {
            shard,
            last_ms: 0,
            counter: 0,
        }
    }

    /// A generator whose next id is greater than `last` (ids from a previous run).
    pub fn resume(shard: u16, last: Option<QueueId>) -> Self {
        let mut g = Self::new(shard);
        if let Some(last) = last {
            g.last_ms = last.ms_since_epoch();
            g.counter = last.counter();
        }
        g
    }

    /// The next id: `ms = max(now_ms, last_ms)`; the same ms increments the counter; a counter
    /// overflow moves to `last_ms + 1` (ids may run slightly ahead of the clock under bursts).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self, now: SystemTime) -> QueueId {
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis()
            .saturating_sub(u128::from(QUEUE_ID_EPOCH_UNIX_MS))
            .min(u128::from(MS_MAX)) as u64;
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            self.counter = 0;
        } else if self.counter < COUNTER_MAX {
            self.counter += 1;
        } else {
            self.last_ms += 1;
            self.counter = 0;
        }
        QueueId::from_parts(self.last_ms, self.shard, self.counter)
    }
}

/// One envelope recipient.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// As on the wire, without `<>`; `"Postmaster"` for `<Postmaster>`.
    pub address: String,
    /// ESMTP RCPT parameters as given (keyword, optional value).
    pub params: Vec<(String, Option<String>)>,
}

impl Recipient {
    /// A recipient without parameters.
    pub fn new(address: impl Into<String>) -> Self {
        Recipient {
            address: address.into(),
            params: Vec::new(),
        }
    }
    /// The value of RCPT parameter `name` (ASCII case-insensitive); `Some(None)` for a
    /// parameter given without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
    /// The domain part (after the last `@`), if any.
    pub fn domain(&self) -> Option<&str> {
        self.address.rsplit_once('@').map(|(_, d)| d)
    }
}

fn find_param<'a>(params: &'a [(String, Option<String>)], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

/// A received message (record kind 1).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    /// `QueueId.0`.
    pub id: u64,
    /// Without `<>`; `""` is the null reverse path.
    pub reverse_path: String,
    /// ESMTP MAIL parameters as given.
    pub mail_params: Vec<(String, Option<String>)>,
    /// Envelope recipients; a [`StateRecord`] refers to one by index.
    pub recipients: Vec<Recipient>,
    /// Arrival time, Unix milliseconds.
    pub arrival_unix_ms: u64,
    /// `"ip:port"` of the client.
    pub client_addr: String,
    /// HELO/EHLO argument.
    pub helo: String,
    /// e.g. `"TLSv1.3 TLS_AES_128_GCM_SHA256"`.
    pub tls: Option<String>,
    /// Authenticated user.
    pub auth: Option<String>,
    /// The campaign the message's header named (`campaigns.campaign_header`), checked at
    /// reception (format version 5).
    pub campaign: Option<String>,
    /// The tenant the message's header named (`campaigns.tenant_header`), checked at
    /// reception (format version 5).
    pub tenant: Option<String>,
    /// `Received:` header + message, CRLF line endings.
    pub body: Vec<u8>,
    /// The priority class chosen at reception ([`crate::priority::Class::code`]; 0 = none
    /// chosen). Not in the archive: the message frame's class byte carries it (format
    /// version 5), so the archived layout is the one of versions 1 to 4.
    #[rkyv(with = rkyv::with::Skip)]
    pub priority: u8,
}

impl MessageRecord {
    /// The id as a [`QueueId`].
    pub fn queue_id(&self) -> QueueId {
        QueueId(self.id)
    }
    /// Number of recipients.
    pub fn recipient_count(&self) -> usize {
        self.recipients.len()
    }
    /// Whether the reverse path is null (`MAIL FROM:<>`, e.g. a bounce).
    pub fn is_null_sender(&self) -> bool {
        self.reverse_path.is_empty()
    }
    /// Body size in bytes.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }
    /// The value of MAIL parameter `name` (ASCII case-insensitive).
    pub fn mail_param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.mail_params, name)
    }
    /// Recipient `index` (as used in [`StateRecord::recipient`]).
    pub fn recipient(&self, index: u32) -> Option<&Recipient> {
        self.recipients.get(index as usize)
    }
    /// Arrival time as a `SystemTime`.
    pub fn arrival(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.arrival_unix_ms)
    }
}

/// One recipient's state change (payload of a [`StateRecord`]).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum RecipientState {
    /// Final: accepted by the next hop.
    Delivered {
        /// When, Unix ms.
        at_unix_ms: u64,
    },
    /// Not final: a temporary failure; try again at `next_attempt_unix_ms`.
    Deferred {
        /// When, Unix ms.
        at_unix_ms: u64,
        /// Next attempt, Unix ms.
        next_attempt_unix_ms: u64,
        /// Attempts so far.
        attempts: u32,
    },
    /// Final: permanent failure (a DSN is the caller's business).
    Bounced {
        /// When, Unix ms.
        at_unix_ms: u64,
    },
    /// Final: the queue lifetime ran out.
    Expired {
        /// When, Unix ms.
        at_unix_ms: u64,
    },
}

impl RecipientState {
    /// Delivered, Bounced and Expired are final; Deferred is not.
    pub fn is_final(&self) -> bool {
        !matches!(self, RecipientState::Deferred { .. })
    }
    /// When this state was reached, Unix ms.
    pub fn at_unix_ms(&self) -> u64 {
        match *self {
            RecipientState::Delivered { at_unix_ms }
            | RecipientState::Deferred { at_unix_ms, .. }
            | RecipientState::Bounced { at_unix_ms }
            | RecipientState::Expired { at_unix_ms } => at_unix_ms,
        }
    }
    /// The attempt count recorded by a Deferred state (0 otherwise).
    pub fn attempts(&self) -> u32 {
        match *self {
            RecipientState::Deferred { attempts, .. } => attempts,
            _ => 0,
        }
    }
    pub(crate) fn final_kind(&self) -> FinalKind {
        match self {
            RecipientState::Delivered { .. } => FinalKind::Delivered,
            RecipientState::Bounced { .. } => FinalKind::Bounced,
            RecipientState::Expired { .. } => FinalKind::Expired,
            RecipientState::Deferred { .. } => FinalKind::Open,
        }
    }
}

/// Record kind 2: one recipient's state change.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StateRecord {
    /// `QueueId.0` of the message.
    pub id: u64,
    /// Index into the message's recipients.
    pub recipient: u32,
    /// The new state.
    pub state: RecipientState,
}

impl StateRecord {
    /// The message id as a [`QueueId`].
    pub fn queue_id(&self) -> QueueId {
        QueueId(self.id)
    }
}

/// Record kind 5 (format version 3): an operator held or released a message. The latest one
/// of a message wins; a held message is not delivered until released, across restarts.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldRecord {
    /// `QueueId.0` of the message.
    pub id: u64,
    /// Held (true) or released (false).
    pub held: bool,
}

/// Record kind 3 (written by the spool itself, never by callers): the segments in `segments`
/// are retired (every recipient in them final) and about to be unlinked; `totals` is the
/// cumulative accounting of every segment ever retired on this shard, including these.
/// Recovery takes `totals` from the last such record and never counts a listed segment again.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct RetireRecord {
    /// Segment numbers retired by this record (plus earlier ones whose unlink failed).
    pub segments: Vec<u64>,
    /// Cumulative totals of all retired segments.
    pub totals: Totals,
}

/// Per-recipient accounting: `accepted = delivered + bounced + expired + queued`.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Totals {
    /// Recipients accepted (one per recipient of every message record).
    pub accepted: u64,
    /// Recipients delivered.
    pub delivered: u64,
    /// Recipients bounced.
    pub bounced: u64,
    /// Recipients expired.
    pub expired: u64,
}

impl Totals {
    /// Recipients still queued (`accepted` minus the final ones).
    pub fn queued(&self) -> u64 {
        self.accepted
            .saturating_sub(self.delivered + self.bounced + self.expired)
    }
    /// Field-wise sum.
    pub fn add(&mut self, o: &Totals) {
        self.accepted += o.accepted;
        self.delivered += o.delivered;
        self.bounced += o.bounced;
        self.expired += o.expired;
    }
    /// Takes back a [`Totals::count_final`] (a message moving to another segment).
    pub(crate) fn uncount_final(&mut self, k: FinalKind) {
        match k {
            FinalKind::Open => {}
            FinalKind::Delivered => self.delivered = self.delivered.saturating_sub(1),
            FinalKind::Bounced => self.bounced = self.bounced.saturating_sub(1),
            FinalKind::Expired => self.expired = self.expired.saturating_sub(1),
        }
    }

    pub(crate) fn count_final(&mut self, k: FinalKind) {
        match k {
            FinalKind::Open => {}
            FinalKind::Delivered => self.delivered += 1,
            FinalKind::Bounced => self.bounced += 1,
            FinalKind::Expired => self.expired += 1,
        }
    }
}

/// Compact per-recipient finality used by the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FinalKind {
    Open = 0,
    Delivered = 1,
    Bounced = 2,
    Expired = 3,
}

impl FinalKind {
    /// The state record that makes a recipient this final (None for `Open`).
    pub(crate) fn to_state(self, at_unix_ms: u64) -> Option<RecipientState> {
        match self {
            FinalKind::Open => None,
            FinalKind::Delivered => Some(RecipientState::Delivered { at_unix_ms }),
            FinalKind::Bounced => Some(RecipientState::Bounced { at_unix_ms }),
            FinalKind::Expired => Some(RecipientState::Expired { at_unix_ms }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn at(unix_ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(unix_ms)
    }

    #[test]
    fn queue_id_display_round_trip() {
        for v in [0u64, 1, 0xDEAD_BEEF, u64::MAX, 0x0123_4567_89AB_CDEF] {
            let id = QueueId(v);
            let s = id.to_string();
            assert_eq!(s.len(), 16);
            assert_eq!(s, s.to_uppercase());
            assert_eq!(s.parse::<QueueId>().unwrap(), id);
            assert_eq!(s.to_lowercase().parse::<QueueId>().unwrap(), id);
        }
        for bad in [
            "",
            "123",
            "0123456789ABCDEFG",
            "0123456789ABCDEG",
            "+123456789ABCDEF",
        ] {
            assert!(bad.parse::<QueueId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn queue_id_parts() {
        let id = QueueId::from_parts(123_456, 1023, 4095);
        assert_eq!(id.ms_since_epoch(), 123_456);
        assert_eq!(id.shard(), 1023);
        assert_eq!(id.counter(), 4095);
        assert_eq!(id.unix_ms(), QUEUE_ID_EPOCH_UNIX_MS + 123_456);
    }

    #[test]
    fn generator_is_strictly_increasing_and_unique() {
        let mut g = QueueIdGenerator::new(7);
        let base = QUEUE_ID_EPOCH_UNIX_MS + 1_000_000;
        let mut seen = HashSet::new();
        let mut last = QueueId(0);
        // 10_000 ids in the same ms (counter overflow twice), then a clock step back.
        for i in 0..10_000u64 {
            let now = if i < 9_000 { base } else { base - 5_000 };
            let id = g.next(at(now));
            assert!(id > last, "{id} after {last}");
            assert!(seen.insert(id));
            assert_eq!(id.shard(), 7);
            last = id;
        }
        assert_eq!(
            QueueId::from_parts(1_000_000, 7, 0).ms_since_epoch(),
            1_000_000
        );
        // Overflow moved ms forward by 2 (4096 per ms).
        assert_eq!(last.ms_since_epoch(), 1_000_002);
        // A later clock wins again.
        let id = g.next(at(base + 10));
        assert_eq!(id.ms_since_epoch(), 1_000_010);
        assert_eq!(id.counter(), 0);
    }

    #[test]
    fn shards_never_collide_and_resume_moves_forward() {
        let now = at(QUEUE_ID_EPOCH_UNIX_MS + 42);
        let a = QueueIdGenerator::new(1).next(now);
        let b = QueueIdGenerator::new(2).next(now);
        assert_ne!(a, b);
        let mut r = QueueIdGenerator::resume(1, Some(QueueId::from_parts(9_999, 1, 17)));
        let n = r.next(now);
        assert_eq!(n, QueueId::from_parts(9_999, 1, 18));
        // Before the epoch: saturates to 0.
        assert_eq!(
            QueueIdGenerator::new(3).next(UNIX_EPOCH).ms_since_epoch(),
            0
        );
    }

    #[test]
    fn accessors() {
        let mut m = MessageRecord {
            id: 5,
            reverse_path: String::new(),
            mail_params: vec![
                ("SIZE".into(), Some("10".into())),
                ("SMTPUTF8".into(), None),
            ],
            recipients: vec![Recipient::new("a@example.org")],
            arrival_unix_ms: 1,
            client_addr: "127.0.0.1:1".into(),
            helo: "x".into(),
            tls: None,
            auth: None,
            campaign: None,
            tenant: None,
            body: b"x\r\n".to_vec(),
            priority: 0,
        };
        assert!(m.is_null_sender());
        assert_eq!(m.mail_param("size"), Some(Some("10")));
        assert_eq!(m.mail_param("smtputf8"), Some(None));
        assert_eq!(m.mail_param("body"), None);
        assert_eq!(m.recipient(0).unwrap().domain(), Some("example.org"));
        m.reverse_path = "s@x".into();
        assert!(!m.is_null_sender());
        assert!(
            !RecipientState::Deferred {
                at_unix_ms: 1,
                next_attempt_unix_ms: 2,
                attempts: 3
            }
            .is_final()
        );
        assert!(RecipientState::Expired { at_unix_ms: 1 }.is_final());
    }
}
