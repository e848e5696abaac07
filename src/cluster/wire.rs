//! The text the nodes exchange through Redis: a decision ([`Note`]) with the node that took
//! it, as published on the cluster's channel, and a suspension as stored in the cluster's
//! suspension table.
//!
//! What it does: encodes and decodes tab-separated lines: `S node key until_ms reason`,
//! `U node key`, `R node key m|c rule value since_ms`; a stored suspension is
//! `until_ms node reason`.
//!
//! What it does not do: no I/O, no applying (the agent and the subscriber apply).
//!
//! Invariants: decoding never panics and refuses anything malformed (a node of another
//! version is ignored, not misread); reasons lose their tabs and line breaks on the way out
//! and are cut to 512 bytes.

use crate::queue::Note;

/// A note with the node that decided it.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    /// The deciding node.
    pub node: String,
    /// What it decided.
    pub note: Note,
}

fn clean(reason: &str) -> String {
    let mut s: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > 512 {
        let mut end = 512;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The channel line of `note` decided by `node`.
pub fn encode(node: &str, note: &Note) -> String {
    match note {
        Note::Suspend {
            key,
            until_ms,
            reason,
        } => format!("S\t{node}\t{key}\t{until_ms}\t{}", clean(reason)),
        Note::Resume { key } => format!("U\t{node}\t{key}"),
        Note::Reduce {
            key,
            rate,
            rule,
            value,
            since_ms,
        } => {
            let kind = if *rate { 'm' } else { 'c' };
            format!("R\t{node}\t{key}\t{kind}\t{rule}\t{value:.6}\t{since_ms}")
        }
    }
}

/// Decodes a channel line.
pub fn decode(line: &str) -> Option<Published> {
    let mut f = line.splitn(7, '\t');
    let kind = f.next()?;
    let node = f.next()?.to_owned();
    let key = f.next()?.to_owned();
    if key.is_empty() {
        return None;
    }
    let note = match kind {
        "S" => {
            let until_ms = f.next()?.parse().ok()?;
            let reason = f.next().unwrap_or("").to_owned();
            Note::Suspend {
                key,
                until_ms,
                reason,
            }
        }
        "U" => Note::Resume { key },
        "R" => {
            let rate = match f.next()? {
                "m" => true,
                "c" => false,
                _ => return None,
            };
            let rule = f.next()?.parse().ok()?;
            let value: f64 = f.next()?.parse().ok()?;
            if !(0.0..=1.0).contains(&value) {
                return None;
            }
            let since_ms = f.next()?.parse().ok()?;
            Note::Reduce {
                key,
                rate,
                rule,
                value,
                since_ms,
            }
        }
        _ => return None,
    };
    Some(Published { node, note })
}

/// The stored form of a suspension.
pub fn suspension(node: &str, until_ms: u64, reason: &str) -> String {
    format!("{until_ms}\t{node}\t{}", clean(reason))
}

/// Decodes a stored suspension: until (Unix ms), node, reason.
pub fn read_suspension(value: &str) -> Option<(u64, &str, &str)> {
    let mut f = value.splitn(3, '\t');
    let until = f.next()?.parse().ok()?;
    Some((until, f.next()?, f.next().unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_garbage_is_refused() {
        let notes = [
            Note::Suspend {
                key: "route:a.test".into(),
                until_ms: 1_800_000_000_000,
                reason: "421 4.7.0 try\tlater\r\n".into(),
            },
            Note::Resume {
                key: "mx:mx1.b.test".into(),
            },
            Note::Reduce {
                key: "relay:c".into(),
                rate: false,
                rule: 3,
                value: 0.5,
                since_ms: 1_800_000_000_123,
            },
        ];
        for n in &notes {
            let line = encode("node-a", n);
            let back = decode(&line).unwrap();
            assert_eq!(back.node, "node-a");
            match (&back.note, n) {
                (Note::Suspend { reason, .. }, Note::Suspend { .. }) => {
                    assert_eq!(reason, "421 4.7.0 try later  ")
                }
                _ => assert_eq!(&back.note, n),
            }
        }
        for bad in [
            "",
            "S",
            "S\tn",
            "S\tn\t\t1",
            "S\tn\tk\tsoon",
            "R\tn\tk\tx\t1\t0.5\t1",
            "R\tn\tk\tm\t1\t7\t1",
            "Z\tn\tk",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        let long = "é".repeat(600);
        let line = encode(
            "n",
            &Note::Suspend {
                key: "k".into(),
                until_ms: 1,
                reason: long,
            },
        );
        assert!(line.len() < 600);
        let stored = suspension("n", 5, "why");
        assert_eq!(read_suspension(&stored), Some((5, "n", "why")));
        assert_eq!(read_suspension("x\ty"), None);
    }
}
