//! Fuzz body: command line framing, command parsing and ESMTP parameters.
//!
//! The first byte picks the options (SMTPUTF8 transaction, line limit); the rest is a stream
//! of client bytes framed by `LineReader` in pieces, each line parsed as a command. Checks:
//! no panic; a parsed command written back by `Command::write_to` parses to the same command;
//! MAIL/RCPT parameters and xtext survive their wire form.

use mta::smtp::command::{Command, parse_command};
use mta::smtp::line::{Line, LineReader};
use mta::smtp::params::{parse_mail_params, parse_rcpt_params, xtext_decode, xtext_encode};

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let utf8 = flags & 1 != 0;
    let max_len = 512 + usize::from(flags >> 1) * 8;
    let piece = usize::from(flags >> 4) + 1;
    let mut reader = LineReader::new(max_len);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    // Bounded: every round feeds at least one octet or consumes a line.
    for _ in 0..(2 * input.len() + 2) {
        let (used, event) = reader.next(&buf);
        let line = match event {
            Some(Line::Command(l)) => Some(l.to_vec()),
            Some(Line::TooLong | Line::BareLf) | None => None,
        };
        assert!(used <= buf.len(), "consumed more than given");
        let got_event = event.is_some();
        buf.drain(..used);
        if let Some(l) = line {
            assert!(l.len() + 2 <= max_len, "a line over the limit was framed");
            command(&l, utf8);
        }
        if !got_event {
            if fed == input.len() {
                break;
            }
            let end = (fed + piece).min(input.len());
            buf.extend_from_slice(&input[fed..end]);
            fed = end;
        }
    }
    params(input);
}

fn command(line: &[u8], utf8: bool) {
    let Ok(cmd) = parse_command(line, utf8) else {
        return;
    };
    let mut wire = Vec::new();
    cmd.write_to(&mut wire);
    assert!(wire.ends_with(b"\r\n"));
    let again = parse_command(&wire[..wire.len() - 2], utf8);
    // Commands whose argument is kept verbatim may not survive trimming; the rest must.
    if !matches!(
        cmd,
        Command::Vrfy(_) | Command::Expn(_) | Command::Help(_) | Command::Auth { .. }
    ) {
        assert_eq!(
            again.as_ref().ok(),
            Some(&cmd),
            "{:?}",
            String::from_utf8_lossy(&wire)
        );
    }
}

fn params(input: &[u8]) {
    if let Ok(p) = parse_mail_params(input) {
        let wire = p.to_wire();
        assert_eq!(
            parse_mail_params(wire.as_bytes()).as_ref(),
            Ok(&p),
            "{wire}"
        );
    }
    if let Ok(p) = parse_rcpt_params(input) {
        let wire = p.to_wire();
        assert_eq!(
            parse_rcpt_params(wire.as_bytes()).as_ref(),
            Ok(&p),
            "{wire}"
        );
    }
    if let Ok(s) = xtext_decode(input) {
        assert_eq!(
            xtext_decode(xtext_encode(&s).as_bytes()).as_deref(),
            Ok(s.as_str())
        );
    }
}
