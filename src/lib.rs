//! A thread-per-core mail transfer agent for bulk sending.

pub mod dns;
