//! Fuzz body: the incremental reply parser.
//!
//! The first byte picks the read size. Checks: no panic; parsing a stream of replies fed in
//! pieces gives the same replies and the same verdict as feeding it at once; the parser looks
//! at each octet at most twice; every accepted reply is within the caps and survives
//! `Reply::write_to` and a second parse.

use mta::smtp::reply::{MAX_REPLY_BYTES, MAX_REPLY_LINES, Reply, ReplyError, ReplyParser};

/// Parses every reply in `input`, `step` octets arriving at a time, as a client does.
fn replies(input: &[u8], step: usize) -> (Vec<(Reply, usize)>, Option<ReplyError>) {
    let mut p = ReplyParser::new();
    let mut out = Vec::new();
    let (mut start, mut end) = (0, 0);
    let mut verdict = None;
    // Bounded: every round returns a reply (at least one octet) or reads at least one octet.
    for _ in 0..=(2 * input.len() + 1) {
        match p.parse(&input[start..end]) {
            Ok(Some((r, used))) => {
                assert!(used > 0 && used <= end - start);
                start += used;
                out.push((r, used));
            }
            Ok(None) if end < input.len() => end = end.saturating_add(step).min(input.len()),
            Ok(None) => break,
            Err(e) => {
                verdict = Some(e);
                break;
            }
        }
    }
    // Each octet is searched once and parsed once, whatever the pieces.
    assert!(
        p.examined() <= 2 * end as u64,
        "{} > 2 * {end}",
        p.examined()
    );
    (out, verdict)
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(flags % 16) + 1;
    let whole = replies(input, input.len().max(1));
    let pieces = replies(input, step);
    assert_eq!(pieces, whole, "step {step}");
    let mut p = ReplyParser::new();
    for (r, used) in &whole.0 {
        assert!(*used <= MAX_REPLY_BYTES && r.lines.len() <= MAX_REPLY_LINES);
        assert!((100..600).contains(&r.code));
        // Written back and parsed again (a text containing CR/LF cannot be written back).
        if r.lines.iter().any(|l| l.contains(['\r', '\n'])) {
            continue;
        }
        let mut wire = Vec::new();
        r.write_to(&mut wire);
        if let Ok(Some((again, n))) = p.parse(&wire) {
            assert_eq!(n, wire.len());
            assert_eq!(again.code, r.code);
            assert_eq!(again.lines.len(), r.lines.len().max(1));
        }
    }
    // One octet at a time costs at most twice the octets, whatever the content.
    let mut p = ReplyParser::new();
    let limit = input.len().min(8192);
    for end in 0..=limit {
        if !matches!(p.parse(&input[..end]), Ok(None)) {
            break;
        }
    }
    assert!(
        p.examined() <= 2 * limit as u64,
        "{} > 2 * {limit}",
        p.examined()
    );
}
