//! Several jobs of one message in one transaction, and what each of them was told.
//!
//! What it does: the queue hands a connection the jobs of one message that wait for the same
//! destination (a route, the relay host or one MX host set) together, up to the
//! destination's `max_recipients_per_transaction` recipients, so that they share a MAIL, one
//! RCPT each and one copy of the content, as Postfix does. [`split`] turns what the
//! transaction got back into one [`Attempt`] per job: each job gets the replies to its own
//! RCPTs, and the reply to MAIL and to the end of data that every recipient shared; a failure
//! of the whole transaction is every job's.
//!
//! What it does not do: no choice of which jobs go together (the scheduler's
//! `take_siblings`), no classification of the replies (`classify`), no records (the recorder).
//!
//! Invariants: the recipients of the jobs are sent in job order, so the RCPT replies are split
//! in that order; every job gets exactly as many RCPT replies as it has recipients, so that
//! the recorder accounts for each recipient once.

use super::classify::Attempt;
use super::client::{ClientError, TransactionReplies};

/// The attempt as each job that went in it sees it; `sizes` are the jobs' recipient counts,
/// in the order their RCPTs were sent.
pub fn split(attempt: Attempt, sizes: &[usize]) -> Vec<Attempt> {
    if let [_] = sizes {
        return vec![attempt];
    }
    match attempt {
        Attempt::Replied(replies) => {
            let TransactionReplies { mail, rcpts, data } = replies;
            let mut rcpts = rcpts.into_iter();
            sizes
                .iter()
                .map(|&n| {
                    let mut own: Vec<_> = rcpts.by_ref().take(n).collect();
                    // The client reads one reply per RCPT it wrote; should one be missing,
                    // the recipient is decided by the MAIL reply rather than left out.
                    own.resize(n, mail.clone());
                    Attempt::Replied(TransactionReplies {
                        mail: mail.clone(),
                        rcpts: own,
                        data: data.clone(),
                    })
                })
                .collect()
        }
        Attempt::Failed(e) => sizes
            .iter()
            .map(|_| Attempt::Failed(same_error(&e)))
            .collect(),
        Attempt::Decided(o) => sizes.iter().map(|_| Attempt::Decided(o.clone())).collect(),
        Attempt::NotSent => sizes.iter().map(|_| Attempt::NotSent).collect(),
    }
}

/// An error that says the same as `e` (I/O errors keep their kind and text).
fn same_error(e: &ClientError) -> ClientError {
    let io = |s: &std::io::Error| std::io::Error::new(s.kind(), s.to_string());
    match e {
        ClientError::Connect { addr, source } => ClientError::Connect {
            addr: *addr,
            source: io(source),
        },
        ClientError::Timeout { phase } => ClientError::Timeout { phase: *phase },
        ClientError::Io { phase, source } => ClientError::Io {
            phase: *phase,
            source: io(source),
        },
        ClientError::Protocol { phase, source } => ClientError::Protocol {
            phase: *phase,
            source: source.clone(),
        },
        ClientError::Tls { reason, handshake } => ClientError::Tls {
            reason: reason.clone(),
            handshake: *handshake,
        },
        ClientError::Auth { status, reason } => ClientError::Auth {
            status: *status,
            reason: reason.clone(),
        },
        ClientError::Refused { phase, reply } => ClientError::Refused {
            phase: *phase,
            reply: reply.clone(),
        },
        ClientError::Policy { status, reason } => ClientError::Policy {
            status: *status,
            reason: reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::classify::{Outcome, Reuse, Verdict, verdict};
    use crate::delivery::phase::Phase;
    use crate::smtp::Reply;

    fn reply(code: u16) -> Reply {
        Reply::multiline(code, None, vec![format!("r{code}")])
    }

    #[test]
    fn rcpt_replies_go_to_their_own_job() {
        let replies = TransactionReplies {
            mail: reply(250),
            rcpts: vec![reply(250), reply(550), reply(451), reply(250), reply(251)],
            data: Some(reply(250)),
        };
        let parts = split(Attempt::Replied(replies), &[2, 1, 2]);
        let outcomes: Vec<Vec<char>> = parts
            .iter()
            .zip([2, 1, 2])
            .map(|(a, n)| match verdict(a, n, Reuse::Fresh) {
                Verdict::Attempted(o) => o
                    .iter()
                    .map(|o| match o {
                        Outcome::Delivered { .. } => 'd',
                        Outcome::Deferred { .. } => 't',
                        Outcome::Bounced { .. } => 'b',
                    })
                    .collect(),
                Verdict::NotAttempted => vec!['-'],
            })
            .collect();
        assert_eq!(outcomes, vec![vec!['d', 'b'], vec!['t'], vec!['d', 'd']]);
    }

    #[test]
    fn mail_and_data_replies_are_everyones() {
        let replies = TransactionReplies {
            mail: reply(250),
            rcpts: vec![reply(250), reply(250), reply(250)],
            data: Some(reply(452)),
        };
        for part in split(Attempt::Replied(replies), &[1, 2]) {
            let Attempt::Replied(r) = part else {
                panic!("replied")
            };
            assert_eq!(r.data, Some(reply(452)));
            assert_eq!(r.mail, reply(250));
        }
    }

    #[test]
    fn a_missing_rcpt_reply_is_decided_by_mail() {
        let replies = TransactionReplies {
            mail: reply(421),
            rcpts: vec![reply(421)],
            data: None,
        };
        let parts = split(Attempt::Replied(replies), &[1, 2]);
        let Attempt::Replied(last) = &parts[1] else {
            panic!("replied")
        };
        assert_eq!(last.rcpts.len(), 2);
    }

    #[test]
    fn failures_are_everyones() {
        let e = ClientError::Io {
            phase: Phase::Mail,
            source: std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"),
        };
        let text = e.to_string();
        let parts = split(Attempt::Failed(e), &[3, 1]);
        assert_eq!(parts.len(), 2);
        for part in &parts {
            let Attempt::Failed(e) = part else {
                panic!("failed")
            };
            assert_eq!(e.to_string(), text);
            // A reused connection's MAIL failure stays "not an attempt" for every job.
            assert_eq!(verdict(part, 1, Reuse::Reused), Verdict::NotAttempted);
        }
        assert_eq!(split(Attempt::NotSent, &[1, 1]).len(), 2);
    }
}
