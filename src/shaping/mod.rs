//! Traffic shaping for bulk sending: the pure building blocks the delivery queue consults.
//!
//! What it does: loads a shaping file (`config/shaping.toml`, format in `docs/SHAPING.md`) that
//! sets per-destination limits at four levels (default < provider < domain < source) and
//! resolves them into a [`Shape`] for one delivery; keeps the adaptive backoff state of one shard
//! ([`RuleEngine`]: rules that suspend, slow down or bounce a destination when its replies match,
//! and that recover step by step); and classifies failure replies into [`BounceClass`]es for
//! logs and metrics.
//!
//! What it does not do: no I/O beyond reading the shaping file, no clock reads (every function
//! that needs the time takes `now`), no enforcement: the scheduler (`crate::queue`) and the
//! connection pool apply the numbers.
//!
//! Invariants: everything here is deterministic given its inputs; a resolved [`Shape`] field
//! that is `None` means "use the MTA's global value"; adjustment factors stay in
//! `[MIN_FACTOR, 1.0]`.

mod bounce_class;
mod config;
mod rule;
mod rules;
mod thresholds;
mod values;

#[cfg(test)]
mod bounce_class_tests;
#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod rules_tests;

pub use bounce_class::{BounceClass, BounceClassifier, classify, classify_failure};
pub use config::{Shape, Shaping};
pub use rules::{
    Action, ActionKind, Adjustment, EnhancedPattern, MIN_FACTOR, Rule, RuleAction, RuleEngine,
    Trigger,
};
pub use thresholds::{Threshold, Thresholds};
pub use values::{ShapingError, parse_rate};
