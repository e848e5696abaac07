//! The building blocks of the admin/metrics HTTP endpoint.
//!
//! What it does: [`http`] serves HTTP/1.1 on a shard's executor with hyper and hands each
//! request, after the handler's access check and with its body read and bounded, to a
//! [`Handler`]; [`access`] decides which peers may make requests; [`client`] is the blocking client the CLI uses to talk to a running daemon.
//!
//! What it does not do: no routes of its own (the handler owns them), no TLS, no HTTP/2.
//!
//! Invariants: the server runs on one shard and nothing in it is `Send`; request heads, bodies
//! and connections are bounded ([`http::MAX_HEAD`], [`http::MAX_BODY`],
//! [`http::MAX_CONNECTIONS`]), and so is every wait; bad input is answered or the connection dropped, never a panic.

pub mod access;
pub mod api;
pub mod client;
pub mod control;
pub mod http;
mod rt;
pub mod service;

pub use access::AccessPolicy;
pub use http::{Handler, Request, Response, serve};

/// Errors of the admin client.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request could not be made or its answer read (connect, I/O, timeout, bad URL).
    #[error("admin request to {url} failed: {source}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<ureq::Error>,
    },
}
