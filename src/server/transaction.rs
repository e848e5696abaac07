//! One mail transaction of an inbound session: MAIL, its RCPTs and the message body as it
//! arrives, until it becomes a spool record.
//!
//! What it does: holds the envelope and the body buffer (our `Received:` header followed by
//! the decoded message), and turns them into the spool's [`MessageRecord`].
//!
//! What it does not do: no protocol decisions (the session makes them), no I/O.
//!
//! Invariants: `body[..header_len]` is our trace header once the body has begun; the message
//! octets counted against the size limit are `body.len() - header_len`.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::smtp::data::ChunkChecker;
use crate::smtp::params::{MailParams, RcptParams};
use crate::smtp::{ForwardPath, ReversePath};
use crate::spool::{MessageRecord, QueueId, Recipient};

/// An open transaction.
pub struct Transaction {
    /// The reverse path given in MAIL.
    pub reverse_path: ReversePath,
    /// MAIL's ESMTP parameters.
    pub params: MailParams,
    /// Accepted recipients, in order.
    pub recipients: Vec<(ForwardPath, RcptParams)>,
    /// The queue id, assigned when the body begins (DATA or the first BDAT).
    pub id: Option<QueueId>,
    /// When the body began.
    pub arrival: SystemTime,
    /// Trace header + message.
    pub body: Vec<u8>,
    /// Length of the trace header at the start of `body`.
    pub header_len: usize,
    /// Present once the body is being received by BDAT (RFC 3030).
    pub chunks: Option<ChunkChecker>,
    /// The shard ran out of memory while the body was arriving: the rest is read and dropped,
    /// and the message is refused with `452 4.3.1` at its end.
    pub shed: bool,
}

impl Transaction {
    /// A transaction opened by MAIL.
    pub fn new(reverse_path: ReversePath, params: MailParams) -> Self {
        Transaction {
            reverse_path,
            params,
            recipients: Vec::new(),
            id: None,
            arrival: UNIX_EPOCH,
            body: Vec::new(),
            header_len: 0,
            chunks: None,
            shed: false,
        }
    }

    /// True once DATA or BDAT has begun the body.
    pub fn body_begun(&self) -> bool {
        self.id.is_some()
    }

    /// Octets of the client's message received so far (our header excluded).
    pub fn message_octets(&self) -> u64 {
        (self.body.len() - self.header_len) as u64
    }

    /// The spool record for this transaction, taking the body out of it.
    pub fn into_record(self, client: SocketAddr, helo: &str) -> MessageRecord {
        let reverse_path = match &self.reverse_path {
            ReversePath::Null => String::new(),
            ReversePath::Mailbox(m) => m.to_string(),
        };
        let recipients = self
            .recipients
            .iter()
            .map(|(path, params)| Recipient {
                address: match path {
                    ForwardPath::Postmaster => "Postmaster".to_owned(),
                    ForwardPath::Mailbox(m) => m.to_string(),
                },
                params: wire_pairs(&params.to_wire()),
            })
            .collect();
        MessageRecord {
            id: self.id.map_or(0, |id| id.0),
            reverse_path,
            mail_params: wire_pairs(&self.params.to_wire()),
            recipients,
            arrival_unix_ms: self
                .arrival
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            client_addr: client.to_string(),
            helo: helo.to_owned(),
            tls: None,
            auth: None,
            campaign: None,
            tenant: None,
            body: self.body,
            priority: 0,
        }
    }
}

/// Splits ESMTP parameters in wire form (`SIZE=10 SMTPUTF8`) into keyword/value pairs.
fn wire_pairs(wire: &str) -> Vec<(String, Option<String>)> {
    wire.split_ascii_whitespace()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (p.to_owned(), None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::wire_pairs;

    #[test]
    fn pairs() {
        assert_eq!(
            wire_pairs("SIZE=10 SMTPUTF8"),
            vec![
                ("SIZE".into(), Some("10".into())),
                ("SMTPUTF8".into(), None)
            ]
        );
        assert!(wire_pairs("").is_empty());
    }
}
