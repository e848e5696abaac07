//! The in-memory ledger of one shard's spool: which messages live in which segment, which of
//! their recipients are final, and therefore which segments may be deleted.
//!
//! What it does: the bookkeeping shared by recovery (built while walking segments) and the
//! running spool (updated after each durable commit), plus the accounting totals.
//!
//! What it does not do: no I/O, no decisions about *when* something is durable: callers apply
//! a record only once it is (recovery: it was read back; runtime: its fdatasync returned).
//!
//! Invariants:
//! - `segs[s].open` = number of non-final recipients of the messages whose record is in `s`.
//! - `segs[s].pins` = number of tracked messages living in another segment whose first final
//!   state for some recipient is recorded in `s`. Deleting `s` while pinned would lose that
//!   final state and resurrect the recipient at the next recovery, so a segment is deletable
//!   only when `open == 0 && pins == 0` (and it is not the segment being written).
//!   Deferred states do not pin: losing one only makes a retry come earlier.
//! - `live` sums `segs[*].totals`; `retired` is what retired segments had; their sum is the
//!   lifetime accounting of the shard (`accepted = delivered + bounced + expired + queued`).

use std::collections::{BTreeMap, HashMap};

use super::model::{FinalKind, RecipientState, StateRecord, Totals};

#[derive(Debug)]
struct MsgEntry {
    segment: u64,
    offset: u64,
    finals: Box<[FinalKind]>,
    open: u32,
    /// Other segments holding a first final state of one of this message's recipients.
    pins: Vec<u64>,
    /// The latest `Deferred` state of recipients not yet final (copied forward with a move).
    deferred: Vec<(u32, RecipientState)>,
    /// Held by an operator (the latest hold record says so).
    held: bool,
}

/// Per-segment bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct SegEntry {
    pub(crate) open: u64,
    pub(crate) msgs: Vec<u64>,
    pub(crate) pins: u64,
    pub(crate) totals: Totals,
}

/// A message to copy forward: where its record is and the states to copy with it.
pub(crate) struct Forward {
    pub(crate) id: u64,
    pub(crate) offset: u64,
    pub(crate) finals: Vec<FinalKind>,
    pub(crate) deferred: Vec<(u32, RecipientState)>,
    pub(crate) held: bool,
}

/// What applying a state record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateOutcome {
    /// No tracked message with that id (its segment was retired, or it never existed).
    UnknownMessage,
    /// The message has fewer recipients.
    NoSuchRecipient,
    /// The recipient was already final; nothing changed (final is final).
    AlreadyFinal,
    /// Applied. `newly_final`: the recipient just became final.
    Applied { newly_final: bool },
}

/// See the module header.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    msgs: HashMap<u64, MsgEntry>,
    segs: BTreeMap<u64, SegEntry>,
    retired: Totals,
    live: Totals,
    queued_messages: u64,
    last_id: Option<u64>,
}

impl Ledger {
    /// Re-homes a tracked message in segment `seg` at `offset` (a move record): its accepted
    /// and final counts go with it, and the segments it pinned are released (the move is
    /// followed by copies of its final states). Returns the segments whose deletability may
    /// have changed (the old home and the released ones); None if the message is not tracked.
    pub(crate) fn move_message(&mut self, id: u64, seg: u64, offset: u64) -> Option<Vec<u64>> {
        let m = self.msgs.get_mut(&id)?;
        let old = m.segment;
        m.offset = offset;
        if old == seg {
            return Some(Vec::new());
        }
        m.segment = seg;
        let pins = std::mem::take(&mut m.pins);
        let open = u64::from(m.open);
        let finals = m.finals.to_vec();
        let n = finals.len() as u64;
        if let Some(o) = self.segs.get_mut(&old) {
            o.open = o.open.saturating_sub(open);
            o.msgs.retain(|x| *x != id);
            o.totals.accepted = o.totals.accepted.saturating_sub(n);
            for k in &finals {
                o.totals.uncount_final(*k);
            }
        }
        let t = self.segs.entry(seg).or_default();
        t.open += open;
        t.msgs.push(id);
        t.totals.accepted += n;
        for k in &finals {
            t.totals.count_final(*k);
        }
        for p in &pins {
            if let Some(s) = self.segs.get_mut(p) {
                s.pins = s.pins.saturating_sub(1);
            }
        }
        let mut changed = pins;
        changed.push(old);
        Some(changed)
    }

    /// Old segments worth emptying: every tracked segment but `current` whose still-open
    /// messages number at most `max_messages`, with those messages' (id, offset, finals).
    pub(crate) fn forward_candidates(
        &self,
        current: Option<u64>,
        max_messages: usize,
    ) -> Vec<(u64, Vec<Forward>)> {
        let mut out = Vec::new();
        for (&seg, entry) in &self.segs {
            if Some(seg) == current || entry.open == 0 {
                continue;
            }
            let open: Vec<&u64> = entry
                .msgs
                .iter()
                .filter(|id| {
                    self.msgs
                        .get(id)
                        .is_some_and(|m| m.open > 0 && m.segment == seg)
                })
                .collect();
            if open.is_empty() || open.len() > max_messages {
                continue;
            }
            let msgs = open
                .into_iter()
                .filter_map(|id| {
                    self.msgs.get(id).map(|m| Forward {
                        id: *id,
                        offset: m.offset,
                        finals: m.finals.to_vec(),
                        deferred: m.deferred.clone(),
                        held: m.held,
                    })
                })
                .collect();
            out.push((seg, msgs));
        }
        out
    }

    /// Registers segment `seg` (idempotent).
    pub(crate) fn ensure_segment(&mut self, seg: u64) {
        self.segs.entry(seg).or_default();
    }

    /// Whether a message with this id is tracked.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.msgs.contains_key(&id)
    }

    /// Registers a durable message record. Returns false (and changes nothing) if the id is
    /// already tracked.
    pub(crate) fn add_message(&mut self, seg: u64, offset: u64, id: u64, recipients: u32) -> bool {
        self.last_id = Some(self.last_id.map_or(id, |l| l.max(id)));
        if self.msgs.contains_key(&id) {
            return false;
        }
        let s = self.segs.entry(seg).or_default();
        s.open += u64::from(recipients);
        s.msgs.push(id);
        s.totals.accepted += u64::from(recipients);
        self.live.accepted += u64::from(recipients);
        if recipients > 0 {
            self.queued_messages += 1;
        }
        self.msgs.insert(
            id,
            MsgEntry {
                segment: seg,
                offset,
                finals: vec![FinalKind::Open; recipients as usize].into_boxed_slice(),
                open: recipients,
                pins: Vec::new(),
                deferred: Vec::new(),
                held: false,
            },
        );
        true
    }

    /// What [`Ledger::apply_state`] would do, without doing it.
    pub(crate) fn check_state(&self, id: u64, recipient: u32) -> StateOutcome {
        match self.msgs.get(&id) {
            None => StateOutcome::UnknownMessage,
            Some(m) => match m.finals.get(recipient as usize) {
                None => StateOutcome::NoSuchRecipient,
                Some(FinalKind::Open) => StateOutcome::Applied { newly_final: false },
                Some(_) => StateOutcome::AlreadyFinal,
            },
        }
    }

    /// Applies a durable state record found in (or committed to) segment `seg`. Returns the
    /// outcome and the segments whose `open` or `pins` may have changed deletability.
    pub(crate) fn apply_state(&mut self, seg: u64, rec: &StateRecord) -> StateOutcome {
        let kind = rec.state.final_kind();
        let Some(m) = self.msgs.get_mut(&rec.id) else {
            return StateOutcome::UnknownMessage;
        };
        let Some(slot) = m.finals.get_mut(rec.recipient as usize) else {
            return StateOutcome::NoSuchRecipient;
        };
        if *slot != FinalKind::Open {
            return StateOutcome::AlreadyFinal;
        }
        if kind == FinalKind::Open {
            let r = rec.recipient;
            m.deferred.retain(|(i, _)| *i != r);
            m.deferred.push((r, rec.state.clone()));
            return StateOutcome::Applied { newly_final: false };
        }
        *slot = kind;
        m.deferred.retain(|(i, _)| *i != rec.recipient);
        m.open -= 1;
        let home = m.segment;
        if m.open == 0 {
            self.queued_messages -= 1;
        }
        let pin = home != seg && !m.pins.contains(&seg);
        if pin {
            m.pins.push(seg);
        }
        let h = self
            .segs
            .get_mut(&home)
            .expect("message segment is tracked");
        h.open -= 1;
        h.totals.count_final(kind);
        self.live.count_final(kind);
        if pin {
            self.segs.entry(seg).or_default().pins += 1;
        }
        StateOutcome::Applied { newly_final: true }
    }

    /// Applies a durable hold record found in (or committed to) segment `seg`; false if the
    /// message is not tracked. The record pins `seg` while the message lives (like a final
    /// state): deleting it could bring back an older hold or release at the next recovery.
    pub(crate) fn apply_hold(&mut self, seg: u64, id: u64, held: bool) -> bool {
        let Some(m) = self.msgs.get_mut(&id) else {
            return false;
        };
        m.held = held;
        if m.segment != seg && !m.pins.contains(&seg) {
            m.pins.push(seg);
            self.segs.entry(seg).or_default().pins += 1;
        }
        true
    }

    /// Whether a tracked message is held.
    pub(crate) fn is_held(&self, id: u64) -> bool {
        self.msgs.get(&id).is_some_and(|m| m.held)
    }

    /// Whether `seg` is tracked and may be deleted (no open recipient, not pinned).
    pub(crate) fn is_deletable(&self, seg: u64) -> bool {
        self.segs
            .get(&seg)
            .is_some_and(|s| s.open == 0 && s.pins == 0)
    }

    /// Every deletable segment except `current`.
    pub(crate) fn deletable_segments(&self, current: Option<u64>) -> Vec<u64> {
        self.segs
            .iter()
            .filter(|(n, s)| Some(**n) != current && s.open == 0 && s.pins == 0)
            .map(|(n, _)| *n)
            .collect()
    }

    /// Totals `seg` would add to the retired totals.
    pub(crate) fn segment_totals(&self, seg: u64) -> Totals {
        self.segs.get(&seg).map(|s| s.totals).unwrap_or_default()
    }

    /// Forgets segment `seg` and its messages. `count`: add its totals to the retired totals
    /// (false for a leftover segment already counted by a durable retire record). Returns the
    /// segments whose pin count dropped to zero.
    pub(crate) fn remove_segment(&mut self, seg: u64, count: bool) -> Vec<u64> {
        let mut unpinned = Vec::new();
        let Some(s) = self.segs.remove(&seg) else {
            return unpinned;
        };
        for id in &s.msgs {
            if let Some(m) = self.msgs.remove(id) {
                if m.open > 0 {
                    self.queued_messages -= 1;
                }
                for p in m.pins {
                    if let Some(ps) = self.segs.get_mut(&p) {
                        ps.pins -= 1;
                        if ps.pins == 0 {
                            unpinned.push(p);
                        }
                    }
                }
            }
        }
        self.live.accepted -= s.totals.accepted;
        self.live.delivered -= s.totals.delivered;
        self.live.bounced -= s.totals.bounced;
        self.live.expired -= s.totals.expired;
        if count {
            self.retired.add(&s.totals);
        }
        unpinned
    }

    /// Sets the retired totals (from the last retire record found by recovery).
    pub(crate) fn set_retired(&mut self, t: Totals) {
        self.retired = t;
    }
    /// Cumulative totals of retired segments.
    pub(crate) fn retired(&self) -> Totals {
        self.retired
    }
    /// Totals of tracked segments.
    pub(crate) fn live(&self) -> Totals {
        self.live
    }
    /// Messages with at least one non-final recipient.
    pub(crate) fn queued_messages(&self) -> u64 {
        self.queued_messages
    }
    /// Largest message id ever registered.
    pub(crate) fn last_id(&self) -> Option<u64> {
        self.last_id
    }
    /// Tracked segment numbers, ascending.
    pub(crate) fn segments(&self) -> impl Iterator<Item = u64> + '_ {
        self.segs.keys().copied()
    }
    /// Segment and frame offset of a tracked message, and whether it is still queued.
    pub(crate) fn location(&self, id: u64) -> Option<(u64, u64, bool)> {
        self.msgs
            .get(&id)
            .map(|m| (m.segment, m.offset, m.open > 0))
    }
    /// Ids of the tracked messages in `seg` (in record order).
    pub(crate) fn messages_in(&self, seg: u64) -> &[u64] {
        self.segs.get(&seg).map_or(&[], |s| &s.msgs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::model::RecipientState;

    fn st(id: u64, r: u32, state: RecipientState) -> StateRecord {
        StateRecord {
            id,
            recipient: r,
            state,
        }
    }
    const D: RecipientState = RecipientState::Delivered { at_unix_ms: 1 };
    const B: RecipientState = RecipientState::Bounced { at_unix_ms: 1 };
    const F: RecipientState = RecipientState::Deferred {
        at_unix_ms: 1,
        next_attempt_unix_ms: 2,
        attempts: 1,
    };

    #[test]
    fn finals_count_once_and_pins_block_deletion() {
        let mut l = Ledger::default();
        assert!(l.add_message(1, 32, 10, 2));
        assert!(l.add_message(2, 32, 20, 1));
        assert!(!l.add_message(2, 64, 20, 1), "duplicate id");
        assert_eq!(l.queued_messages(), 2);
        // Message 10 (segment 1) gets its finals in segment 2 and 3.
        assert_eq!(
            l.apply_state(2, &st(10, 0, F)),
            StateOutcome::Applied { newly_final: false }
        );
        assert_eq!(
            l.apply_state(2, &st(10, 0, D)),
            StateOutcome::Applied { newly_final: true }
        );
        assert_eq!(l.apply_state(2, &st(10, 0, B)), StateOutcome::AlreadyFinal);
        assert_eq!(
            l.apply_state(3, &st(10, 1, B)),
            StateOutcome::Applied { newly_final: true }
        );
        assert_eq!(
            l.apply_state(3, &st(10, 5, B)),
            StateOutcome::NoSuchRecipient
        );
        assert_eq!(
            l.apply_state(3, &st(99, 0, B)),
            StateOutcome::UnknownMessage
        );
        assert_eq!(l.queued_messages(), 1);
        assert!(l.is_deletable(1));
        // Segment 3 holds nothing but a final state for a message of segment 1: pinned.
        assert!(!l.is_deletable(3));
        assert!(!l.is_deletable(2), "open recipient and pinned");
        assert_eq!(l.deletable_segments(None), vec![1]);
        let unpinned = l.remove_segment(1, true);
        assert_eq!(unpinned, vec![2, 3]);
        assert!(l.is_deletable(3));
        assert!(!l.is_deletable(2), "message 20 still open");
        assert_eq!(
            l.retired(),
            Totals {
                accepted: 2,
                delivered: 1,
                bounced: 1,
                expired: 0
            }
        );
        assert_eq!(
            l.live(),
            Totals {
                accepted: 1,
                ..Totals::default()
            }
        );
        assert_eq!(
            l.apply_state(2, &st(20, 0, D)),
            StateOutcome::Applied { newly_final: true }
        );
        assert_eq!(l.deletable_segments(Some(3)), vec![2]);
        assert_eq!(l.queued_messages(), 0);
        assert_eq!(l.last_id(), Some(20));
    }

    #[test]
    fn a_hold_record_pins_its_segment_while_the_message_lives() {
        let mut l = Ledger::default();
        assert!(l.add_message(1, 32, 7, 1));
        l.ensure_segment(2);
        assert!(l.is_deletable(2));
        assert!(l.apply_hold(2, 7, true));
        assert!(l.is_held(7));
        // Deleting segment 2 would forget the hold at the next recovery.
        assert!(!l.is_deletable(2));
        assert!(!l.apply_hold(2, 8, true), "not tracked");
        assert!(l.apply_hold(2, 7, false));
        assert!(!l.is_held(7));
        // The pin goes with the message.
        l.apply_state(1, &st(7, 0, D));
        assert_eq!(l.remove_segment(1, true), vec![2]);
        assert!(l.is_deletable(2));
    }
}
