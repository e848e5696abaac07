//! SMTP AUTH support (RFC 4954), sans-IO.
//!
//! What it does: decodes SASL exchanges for the PLAIN (RFC 4616) and LOGIN mechanisms
//! ([`sasl`]), loads and checks a users file of argon2 password hashes ([`users`]), and
//! throttles clients that keep failing ([`throttle`]). For the outbound client it reads the
//! credentials presented to a next hop and writes the PLAIN and LOGIN lines ([`client`]).
//!
//! What it does not do: no sockets, no clock reads (time is passed in), no TLS policy (the
//! session decides whether AUTH is offered), no reply formatting beyond the challenge text.
//!
//! Invariants: every input-derived failure is a value ([`AuthError`], a SASL step), never a
//! panic; passwords are never logged or placed in error messages.

pub mod client;
pub mod sasl;
pub mod throttle;
pub mod users;

pub use client::{ClientCredentials, CredentialsError, CredentialsFile};
pub use sasl::{Credentials, Mechanism, SaslExchange, Step};
pub use throttle::{FailureThrottle, ThrottleLimits};
pub use users::{Users, hash_password};

use std::path::PathBuf;

/// Errors from loading a users file or hashing a password.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The users file could not be read.
    #[error("cannot read users file {path}: {source}")]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line of the users file is invalid.
    #[error("{origin}:{line}: {reason}")]
    Syntax {
        /// Where the text came from (usually the file name).
        origin: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// Hashing a password failed.
    #[error("cannot hash password: {0}")]
    Hash(String),
}
