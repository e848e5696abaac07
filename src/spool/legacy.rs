//! The message record as format versions 1 to 4 wrote it (record kinds 1 and 4).
//!
//! What it does: keeps the archived layout of [`MessageRecordV4`], so that messages spooled by
//! an older build are still read, and turns one into today's [`MessageRecord`] (without a
//! campaign or tenant: older builds did not read them).
//!
//! What it does not do: no writing of this layout outside tests (the live spool writes kinds 6
//! and 7), no framing (`format.rs`).
//!
//! Invariants: the fields, their types and their order are exactly those of the version-4
//! `MessageRecord`; never change them.

use rkyv::{Archive, Deserialize, Serialize};

use super::model::{MessageRecord, Recipient};

/// A received message as format versions 1 to 4 archived it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MessageRecordV4 {
    /// `QueueId.0`.
    pub id: u64,
    /// Without `<>`; `""` is the null reverse path.
    pub reverse_path: String,
    /// ESMTP MAIL parameters as given.
    pub mail_params: Vec<(String, Option<String>)>,
    /// Envelope recipients.
    pub recipients: Vec<Recipient>,
    /// Arrival time, Unix milliseconds.
    pub arrival_unix_ms: u64,
    /// `"ip:port"` of the client.
    pub client_addr: String,
    /// HELO/EHLO argument.
    pub helo: String,
    /// TLS version and cipher.
    pub tls: Option<String>,
    /// Authenticated user.
    pub auth: Option<String>,
    /// `Received:` header + message.
    pub body: Vec<u8>,
}

impl From<MessageRecordV4> for MessageRecord {
    fn from(m: MessageRecordV4) -> MessageRecord {
        MessageRecord {
            id: m.id,
            reverse_path: m.reverse_path,
            mail_params: m.mail_params,
            recipients: m.recipients,
            arrival_unix_ms: m.arrival_unix_ms,
            client_addr: m.client_addr,
            helo: m.helo,
            tls: m.tls,
            auth: m.auth,
            campaign: None,
            tenant: None,
            priority: 0,
            body: m.body,
        }
    }
}
