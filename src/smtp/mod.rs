//! SMTP protocol, sans-IO: bytes in, values out (RFC 5321 and its extensions).
//!
//! What it does: frames command lines, parses commands, paths and ESMTP parameters,
//! formats and parses replies, decodes DATA (dot-unstuffing, end-of-data detection,
//! bare CR/LF policing), checks BDAT chunks and counts hops (`Received:` fields).
//!
//! What it does not do: no socket, no clock, no file. The server session, the delivery
//! client and the load generator all drive it with their own I/O.
//!
//! Invariants: every parser takes `&[u8]` and either returns a value, asks for more
//! input, or returns a typed error that maps to exactly one RFC reply. Nothing on the
//! DATA path allocates or copies per line.

pub mod address;
pub mod command;
pub mod data;
pub mod ehlo;
pub mod hops;
pub mod line;
pub mod params;
pub mod reply;

pub use address::{Domain, ForwardPath, Mailbox, ReversePath};
pub use command::{Command, CommandError};
pub use data::{BareLineEnding, ChunkChecker, DataDecoder, DataEvent};
pub use line::{Line, LineReader};
pub use reply::{EnhancedStatus, Reply};
