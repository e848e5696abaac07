//! The building blocks of the admin/metrics HTTP endpoint.
//!
//! What it does: [`http`] serves HTTP/1.1 on a shard's executor with hyper, lets a [`Handler`]
//! refuse a request from its head before the body is read, and hands each admitted request,
//! body read and bounded, to it; [`access`] decides which peers may use the endpoint;
//! [`client`] is the blocking client the CLI uses to talk to a running daemon.
//!
//! What it does not do: no routes of its own (the handler owns them), no TLS, no HTTP/2.
//!
//! Invariants: the server runs on one shard and nothing in it is `Send`; request bodies are
//! bounded ([`http::MAX_BODY`], [`http::MAX_HEAD`]), and so are connections
//! ([`http::MAX_CONNECTIONS`]) and every read and write (timeouts); bad input is answered or
//! the connection dropped, never a panic.

pub mod access;
pub mod api;
pub mod campaigns;
pub mod client;
pub mod control;
pub mod encode;
pub mod http;
pub mod query;
mod rt;
pub mod service;
pub mod suppression;

pub use access::{AccessPolicy, LiveAccess};
pub use http::{Handler, Head, Request, Response, serve};

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
