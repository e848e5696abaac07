//! Feedback coming back from receivers: delivery status notifications and complaint reports.
//!
//! What it does: [`report`] reads a report message into what it says; [`verp`] makes and
//! checks the envelope senders that bounces come back to; [`fields`] splits the
//! header-style field blocks those reports carry.
//!
//! What it does not do: no reception, no matching to sent mail, no suppression; the callers
//! decide what a report changes.
//!
//! Invariants: every function here is total over arbitrary bytes and bounded in memory.

pub mod fields;
pub mod report;
pub mod verp;

pub use report::{DsnRecipient, Kind, Report};
pub use verp::{Verp, VerpError, VerpTarget};
