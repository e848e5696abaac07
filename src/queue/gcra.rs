//! Two small pieces of the host-wide limits: a generic cell rate algorithm schedule in one
//! atomic, and a shaping rule's reduction packed in one atomic word.
//!
//! What it does: [`Gcra`] grants tokens at a rate with a burst, by compare-and-swap on its
//! theoretical arrival time; [`Reduction`] packs and unpacks a rule's factor and the time it
//! was set, and says what it is worth at a later time (it doubles back).
//!
//! What it does not do: no registry, no destinations (`shared.rs`), no clock of its own.
//!
//! Invariants: a GCRA never grants more than `messages` tokens in any window of `per` (after a
//! burst of `messages` at the start); arithmetic saturates; a packed reduction is never 0 (0
//! means none).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Rate;

/// A generic cell rate algorithm schedule: the theoretical arrival time of the next token.
#[derive(Debug, Default)]
pub(super) struct Gcra {
    pub(super) tat: AtomicU64,
}

/// Nanoseconds per token, and the tolerance that allows a burst of `messages`.
fn period(rate: Rate) -> (u64, u64) {
    let per = u64::try_from(rate.per.as_nanos()).unwrap_or(u64::MAX);
    let n = u64::from(rate.messages.max(1));
    let t = (per / n).max(1);
    (t, t.saturating_mul(n - 1))
}

impl Gcra {
    pub(super) fn take(&self, now: u64, rate: Rate) -> Result<(), u64> {
        let (t, tolerance) = period(rate);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let base = tat.max(now);
            if base - now > tolerance {
                return Err(base - tolerance);
            }
            match self.tat.compare_exchange_weak(
                tat,
                base.saturating_add(t),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }

    pub(super) fn due(&self, now: u64, rate: Rate) -> Option<u64> {
        let (_, tolerance) = period(rate);
        let base = self.tat.load(Ordering::Acquire).max(now);
        (base - now > tolerance).then(|| base - tolerance)
    }

    pub(super) fn available(&self, now: u64, rate: Rate) -> f64 {
        let (t, tolerance) = period(rate);
        let base = self.tat.load(Ordering::Acquire).max(now);
        let room = tolerance.saturating_add(t).saturating_sub(base - now);
        room as f64 / t as f64
    }
}

/// A shaping rule's reduction: a factor in `(0, 1)` set at `since` by rule `rule`, doubling
/// back every `recover_after` of the rule. Packed in 64 bits to be read and replaced whole:
/// rule (12 bits), factor (16 bits, in 1/65535), since (36 bits, in 10 ms since the epoch:
/// about 21 years).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reduction {
    /// The rule's index in the shaping file.
    pub rule: usize,
    /// The factor when set.
    pub value: f64,
    /// When it was set.
    pub since: Instant,
}

impl Reduction {
    const TICK_NS: u128 = 10_000_000;

    pub(super) fn pack(&self, epoch: Instant) -> u64 {
        let rule = (self.rule as u64).min(0xfff);
        let value = (self.value.clamp(0.0, 1.0) * 65535.0).round() as u64;
        let since = (self.since.saturating_duration_since(epoch).as_nanos() / Self::TICK_NS)
            .min((1 << 36) - 1) as u64;
        // Never 0: 0 means "none".
        (rule << 52) | (value << 36) | since.max(1)
    }

    pub(super) fn unpack(bits: u64, epoch: Instant) -> Option<Reduction> {
        if bits == 0 {
            return None;
        }
        let since = Duration::from_nanos((bits & ((1 << 36) - 1)).saturating_mul(10_000_000));
        Some(Reduction {
            rule: (bits >> 52) as usize,
            value: ((bits >> 36) & 0xffff) as f64 / 65535.0,
            since: super::later(epoch, since),
        })
    }

    /// The factor at `now`: doubled for every `recover_after` gone by, at most 1.
    pub(super) fn at(&self, now: Instant, recover_after: Option<Duration>) -> f64 {
        let Some(every) = recover_after else {
            return 1.0;
        };
        let steps = now.saturating_duration_since(self.since).as_nanos() / every.as_nanos().max(1);
        let steps = i32::try_from(steps.min(64)).unwrap_or(64);
        (self.value * 2f64.powi(steps)).min(1.0)
    }
}
