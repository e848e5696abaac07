//! The server's canned replies: every fixed reply text and code in one place.
//!
//! What it does: builds the `Reply` values the session sends, each with its RFC 5321 code and
//! RFC 3463 enhanced status code (RFC 2034: on every reply but the greeting and EHLO/HELO).
//!
//! What it does not do: no decisions; the session picks which reply applies.
//!
//! Invariants: codes and enhanced codes agree in class (2/4/5).

use crate::smtp::{EnhancedStatus, Reply};
use crate::spool::QueueId;

const fn st(class: u8, subject: u16, detail: u16) -> EnhancedStatus {
    EnhancedStatus::new(class, subject, detail)
}

/// `220 <host> ESMTP ready` (no enhanced code: not yet negotiated).
pub fn greeting(hostname: &str) -> Reply {
    Reply::multiline(220, None, vec![format!("{hostname} ESMTP ready")])
}

/// `221 2.0.0 <host> closing connection`.
pub fn bye(hostname: &str) -> Reply {
    Reply::new(221, st(2, 0, 0), format!("{hostname} closing connection"))
}

/// `250 2.0.0 Ok`.
pub fn ok() -> Reply {
    Reply::new(250, st(2, 0, 0), "Ok")
}

/// `250 2.1.0 Ok` (MAIL accepted).
pub fn sender_ok() -> Reply {
    Reply::new(250, st(2, 1, 0), "Sender ok")
}

/// `250 2.1.5 Ok` (RCPT accepted).
pub fn recipient_ok() -> Reply {
    Reply::new(250, st(2, 1, 5), "Recipient ok")
}

/// `354` (RFC 5321 4.2.2: intermediate replies carry no enhanced code).
pub fn start_data() -> Reply {
    Reply::multiline(354, None, vec!["End data with <CR><LF>.<CR><LF>".into()])
}

/// The wire form of [`sender_ok`], written as is on the hot path.
pub const SENDER_OK: &[u8] = b"250 2.1.0 Sender ok\r\n";

/// The wire form of [`recipient_ok`].
pub const RECIPIENT_OK: &[u8] = b"250 2.1.5 Recipient ok\r\n";

/// The wire form of [`start_data`].
pub const START_DATA: &[u8] = b"354 End data with <CR><LF>.<CR><LF>\r\n";

/// Appends the wire form of [`queued`] for `id` (no allocation).
pub fn write_queued(id: QueueId, out: &mut Vec<u8>) {
    out.extend_from_slice(b"250 2.0.0 Ok: queued as ");
    out.extend_from_slice(&id.hex());
    out.extend_from_slice(b"\r\n");
}

/// `250 2.0.0 Ok: queued as <id>`.
pub fn queued(id: &str) -> Reply {
    Reply::new(250, st(2, 0, 0), format!("Ok: queued as {id}"))
}

/// `250 2.0.0 <n> octets received` (a BDAT chunk that is not the last).
pub fn chunk_received(octets: u64) -> Reply {
    Reply::new(250, st(2, 0, 0), format!("{octets} octets received"))
}

/// `252 2.5.2` for VRFY (RFC 5321 3.5.3: we do not verify, but will try).
pub fn cannot_vrfy() -> Reply {
    Reply::new(
        252,
        st(2, 5, 2),
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}

/// `502 5.5.1` for EXPN (not offered).
pub fn not_implemented(what: &str) -> Reply {
    Reply::new(502, st(5, 5, 1), format!("{what} not implemented"))
}

/// `214 2.0.0` for HELP.
pub fn help() -> Reply {
    Reply::new(
        214,
        st(2, 0, 0),
        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP; see RFC 5321",
    )
}

/// `503 5.5.1` bad sequence of commands, with the reason.
pub fn bad_sequence(why: &str) -> Reply {
    Reply::new(503, st(5, 5, 1), format!("Bad sequence of commands: {why}"))
}

/// `554 5.5.1 No valid recipients` (RFC 2920 3.1: DATA after every RCPT failed).
pub fn no_valid_recipients() -> Reply {
    Reply::new(554, st(5, 5, 1), "No valid recipients")
}

/// `500 5.5.2 Line too long`.
pub fn line_too_long(max: usize) -> Reply {
    Reply::new(
        500,
        st(5, 5, 2),
        format!("Line too long (the limit is {max} octets with CRLF)"),
    )
}

/// `500 5.5.2` for a command line ended by a bare LF (RFC 5321 2.3.8, 4.1.1.4).
pub fn bare_lf_command() -> Reply {
    Reply::new(
        500,
        st(5, 5, 2),
        "Command line ended by a bare LF; lines must end with CRLF",
    )
}

/// `552 5.3.4` message too large (RFC 1870).
pub fn too_large(max: u64) -> Reply {
    Reply::new(
        552,
        st(5, 3, 4),
        format!("Message size exceeds fixed maximum message size of {max} octets"),
    )
}

/// `554 5.4.6` a message with more `Received:` fields than allowed (a mail loop, RFC 5321 6.3).
pub fn too_many_hops() -> Reply {
    Reply::new(554, st(5, 4, 6), "Too many hops")
}

/// `452 4.3.1` insufficient system storage (spool error, disk floor, backpressure).
pub fn insufficient_storage() -> Reply {
    Reply::new(
        452,
        st(4, 3, 1),
        "Insufficient system storage, try again later",
    )
}

/// `452 4.5.3` too many recipients (RFC 5321 4.5.3.1.10).
pub fn too_many_recipients() -> Reply {
    Reply::new(452, st(4, 5, 3), "Too many recipients")
}

/// `554 5.7.1 <rcpt>: Relay access denied`.
pub fn relay_denied(rcpt: &str) -> Reply {
    Reply::new(554, st(5, 7, 1), format!("{rcpt}: Relay access denied"))
}

/// `550 5.1.1 <rcpt>: <why>` for an address of the bounce domain that is not a valid VERP
/// address.
pub fn bad_report_address(rcpt: &str, why: &str) -> Reply {
    Reply::new(550, st(5, 1, 1), format!("{rcpt}: {why}"))
}

/// `550 5.7.1 <rcpt>: on the suppression list (<kind>)`.
pub fn suppressed(rcpt: &str, kind: &str) -> Reply {
    Reply::new(
        550,
        st(5, 7, 1),
        format!("{rcpt}: Recipient is on the suppression list ({kind})"),
    )
}

/// `550 5.6.0` for message data containing a bare CR or LF (anti-smuggling policy).
pub fn bare_line_ending_data() -> Reply {
    Reply::new(
        550,
        st(5, 6, 0),
        "Message refused: bare CR or LF in message data; lines must end with CRLF",
    )
}

/// `555 5.5.4` for a MAIL parameter value we recognise but do not offer.
pub fn param_not_offered(what: &str) -> Reply {
    Reply::new(555, st(5, 5, 4), format!("{what} not supported"))
}

/// `421 4.7.0` too many errors; the session closes.
pub fn too_many_errors(hostname: &str) -> Reply {
    Reply::new(
        421,
        st(4, 7, 0),
        format!("{hostname} Error: too many errors"),
    )
}

/// `421 4.7.0` too many connections; the connection closes after the greeting.
pub fn too_many_connections(hostname: &str) -> Reply {
    Reply::new(
        421,
        st(4, 7, 0),
        format!("{hostname} Too many connections, try again later"),
    )
}

/// `421 4.7.0` too many connections (or too many new ones) from the client's address.
pub fn too_many_from_address(hostname: &str) -> Reply {
    Reply::new(
        421,
        st(4, 7, 0),
        format!("{hostname} too many connections from your address"),
    )
}

/// `421 4.4.2` timeout; the session closes.
pub fn timeout(hostname: &str) -> Reply {
    Reply::new(
        421,
        st(4, 4, 2),
        format!("{hostname} Timeout exceeded, closing connection"),
    )
}

/// `421 4.3.2` the service is shutting down; the session closes.
pub fn shutting_down(hostname: &str) -> Reply {
    Reply::new(
        421,
        st(4, 3, 2),
        format!("{hostname} Service shutting down, closing connection"),
    )
}

/// `220 2.0.0 Ready to start TLS` (RFC 3207).
pub fn ready_for_tls() -> Reply {
    Reply::new(220, st(2, 0, 0), "Ready to start TLS")
}

/// `530 5.7.0 Authentication required` (RFC 4954 6).
pub fn auth_required() -> Reply {
    Reply::new(530, st(5, 7, 0), "Authentication required")
}

/// `530 5.7.10 REQUIRETLS needs a TLS session`: the REQUIRETLS MAIL parameter (RFC 8689 4.1)
/// outside TLS (X.7.10 "Encryption needed", RFC 5248).
pub fn requiretls_without_tls() -> Reply {
    Reply::new(
        530,
        st(5, 7, 10),
        "REQUIRETLS needs a TLS session: STARTTLS first",
    )
}

/// `538 5.7.11 Encryption required for requested authentication mechanism` (RFC 4954 6).
pub fn encryption_required() -> Reply {
    Reply::new(
        538,
        st(5, 7, 11),
        "Encryption required for requested authentication mechanism",
    )
}

/// `504 5.5.4 Unrecognized authentication type` (RFC 4954 4).
pub fn unknown_mechanism() -> Reply {
    Reply::new(504, st(5, 5, 4), "Unrecognized authentication type")
}

/// `501 5.0.0 Authentication cancelled` (RFC 4954 4: the client sent `*`).
pub fn auth_cancelled() -> Reply {
    Reply::new(501, st(5, 0, 0), "Authentication cancelled")
}

/// `501 5.5.2 Cannot decode response` (RFC 4954 4: bad BASE64).
pub fn auth_malformed() -> Reply {
    Reply::new(501, st(5, 5, 2), "Cannot decode response")
}

/// `235 2.7.0 Authentication successful` (RFC 4954 6).
pub fn auth_succeeded() -> Reply {
    Reply::new(235, st(2, 7, 0), "Authentication successful")
}

/// `535 5.7.8 Authentication credentials invalid` (RFC 4954 6).
pub fn auth_failed() -> Reply {
    Reply::new(535, st(5, 7, 8), "Authentication credentials invalid")
}

/// `454 4.7.0 Temporary authentication failure` (RFC 4954 6), for a throttled address.
pub fn auth_throttled() -> Reply {
    Reply::new(
        454,
        st(4, 7, 0),
        "Temporary authentication failure: too many failures, try later",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: Reply) -> Vec<u8> {
        let mut out = Vec::new();
        r.write_to(&mut out);
        out
    }

    #[test]
    fn hot_path_constants_match_their_replies() {
        assert_eq!(SENDER_OK, wire(sender_ok()));
        assert_eq!(RECIPIENT_OK, wire(recipient_ok()));
        assert_eq!(START_DATA, wire(start_data()));
        let id = QueueId(0x0123_4567_89AB_CDEF);
        let mut out = Vec::new();
        write_queued(id, &mut out);
        assert_eq!(out, wire(queued(&id.to_string())));
        assert_eq!(out, b"250 2.0.0 Ok: queued as 0123456789ABCDEF\r\n");
    }

    #[test]
    fn replies_have_their_wire_form() {
        assert_eq!(wire(ok()), b"250 2.0.0 Ok\r\n");
        assert_eq!(
            wire(Reply::multiline(250, None, vec!["a".into(), "b".into()])),
            b"250-a\r\n250 b\r\n"
        );
        assert_eq!(wire(Reply::multiline(250, None, vec![])), b"250 \r\n");
        assert_eq!(
            wire(Reply::new(552, EnhancedStatus::new(5, 3, 4), "")),
            b"552 5.3.4\r\n"
        );
    }
}
