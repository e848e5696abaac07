//! Feedback coming back from receivers: delivery status notifications and complaint reports.
//!
//! What it does: [`config`] is the `[feedback]` section; [`host`] holds the host's state
//! (report addresses, VERP, the label book of [`labels`], the Message-ID index of [`index`])
//! and each shard's view of it; [`report`] reads a report message into what it says;
//! [`matching`] ties what it says to a message and recipient we sent; [`verp`] makes and
//! checks the envelope senders that bounces come back to; [`fields`] splits the header-style
//! field blocks those reports carry.
//!
//! What it does not do: no reception and no effects: the server's intake applies what a
//! report means (events, suppression, campaign counts).
//!
//! Invariants: every parsing function here is total over arbitrary bytes and bounded in
//! memory; the label book and the index are bounded by their configured sizes.

pub mod config;
pub mod fields;
pub mod host;
pub mod index;
mod index_file;
pub mod labels;
pub mod matching;
pub mod report;
pub mod verp;

pub use config::FeedbackSection;
pub use host::{Feedback, FeedbackError, Rcpt, Shard};
pub use matching::{Finding, How, Target};
pub use report::{DsnRecipient, Kind, Report};
pub use verp::{Verp, VerpError, VerpTarget};
