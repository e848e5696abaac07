//! The one place that decides what a delivery attempt means for a recipient.
//!
//! What it does: maps a server reply or a client failure to `Delivered`, `Deferred` or
//! `Bounced`, with the enhanced status code and the diagnostic that go into the log and any DSN;
//! and decides whether what a connection reports about a job was an attempt at all
//! ([`Verdict`]).
//!
//! What it does not do: no retry timing (the scheduler), no records (the recorder).
//!
//! Invariants: 2xx → delivered; 4xx, timeouts, network, TLS and AUTH failures → deferred;
//! 5xx → bounced. Nothing else. A transaction on a reused connection that failed before the server
//! replied to MAIL is not an attempt (the server may have closed an idle connection); every
//! other report is one.

use super::client::{ClientError, TransactionReplies, default_status};
use super::phase::Phase;
use crate::smtp::{EnhancedStatus, Reply};

/// What a connection reports about one job.
#[derive(Debug)]
pub enum Attempt {
    /// The transaction ran: the replies.
    Replied(TransactionReplies),
    /// It failed with no usable reply (network, timeout, protocol).
    Failed(ClientError),
    /// Decided without a transaction (no route, no connection, too large for the server, a
    /// shaping rule, an unreadable spool): the same outcome for every recipient.
    Decided(Outcome),
    /// Never sent: the connection failed before this job's transaction began.
    NotSent,
}

/// Whether the connection the job went out on had carried a transaction before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// A connection's first transaction.
    Fresh,
    /// A connection that had carried mail before.
    Reused,
}

/// What a report means for the job.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An attempt: one outcome per recipient of the job, in the job's order.
    Attempted(Vec<Outcome>),
    /// Not an attempt: the job goes back to its queue and no attempt is counted.
    NotAttempted,
}

/// Classifies what a connection reports about a job of `recipients` recipients.
pub fn verdict(attempt: &Attempt, recipients: usize, reuse: Reuse) -> Verdict {
    let all = |o: Outcome| Verdict::Attempted(vec![o; recipients]);
    match attempt {
        Attempt::Replied(replies) => Verdict::Attempted(
            (0..recipients)
                .map(|k| Outcome::of_reply(replies.for_recipient(k)))
                .collect(),
        ),
        Attempt::Failed(ClientError::Io {
            phase: Phase::Mail, ..
        }) if reuse == Reuse::Reused => Verdict::NotAttempted,
        Attempt::Failed(e) => all(Outcome::of_error(e)),
        Attempt::Decided(o) => all(o.clone()),
        Attempt::NotSent => Verdict::NotAttempted,
    }
}

/// The status the waiting jobs of a destination are deferred with when no hop could be
/// opened and `err` was the last failure: a failed AUTH's own (`4.7.x`), else `4.4.1`.
pub fn open_failed_status(err: &ClientError) -> EnhancedStatus {
    match err {
        ClientError::Auth { status, .. } | ClientError::Policy { status, .. } => *status,
        _ => EnhancedStatus::new(4, 4, 1),
    }
}

impl TransactionReplies {
    /// Every reply of the transaction, in order: MAIL, each RCPT, then the data reply.
    pub fn all(&self) -> impl Iterator<Item = &Reply> {
        std::iter::once(&self.mail)
            .chain(&self.rcpts)
            .chain(&self.data)
    }

    /// Each distinct failure reply, once, in order (what the shaping rules are shown).
    pub fn distinct_failures(&self) -> Vec<&Reply> {
        let mut seen: Vec<&Reply> = Vec::new();
        for r in self.all() {
            if !r.is_positive_completion() && !seen.contains(&r) {
                seen.push(r);
            }
        }
        seen
    }
}

/// What happened to one recipient in one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took responsibility for it.
    Delivered {
        /// Its reply.
        reply: String,
    },
    /// Try again later.
    Deferred {
        /// Enhanced status (4.x.x).
        status: EnhancedStatus,
        /// The reply or the failure, for the log.
        diagnostic: String,
    },
    /// Permanent failure: the sender gets a bounce.
    Bounced {
        /// Enhanced status (5.x.x).
        status: EnhancedStatus,
        /// The reply or our own reason, for the log and the DSN.
        diagnostic: String,
    },
}

impl Outcome {
    /// The outcome of a reply that decides a recipient's fate.
    pub fn of_reply(reply: &Reply) -> Outcome {
        let diagnostic = reply.line();
        match reply.code / 100 {
            2 => Outcome::Delivered { reply: diagnostic },
            5 => Outcome::Bounced {
                status: default_status(reply),
                diagnostic,
            },
            // 4xx, and anything malformed (1xx/3xx where a final reply was due): try again.
            _ => Outcome::Deferred {
                status: match reply.status {
                    Some(s) if s.class == 4 => s,
                    _ => EnhancedStatus::new(4, 0, 0),
                },
                diagnostic,
            },
        }
    }

    /// The outcome of a failure with no usable reply (network, timeout, protocol error).
    pub fn of_error(err: &ClientError) -> Outcome {
        match err {
            ClientError::Refused { .. } => Outcome::Deferred {
                status: EnhancedStatus::new(4, 4, 0),
                diagnostic: err.to_string(),
            },
            ClientError::Timeout { .. } => Outcome::Deferred {
                status: EnhancedStatus::new(4, 4, 2),
                diagnostic: err.to_string(),
            },
            ClientError::Auth { status, .. } => Outcome::Deferred {
                status: *status,
                diagnostic: err.to_string(),
            },
            _ => Outcome::Deferred {
                status: EnhancedStatus::new(4, 4, 1),
                diagnostic: err.to_string(),
            },
        }
    }

    /// A permanent failure decided here (no route, null MX, size, SMTPUTF8).
    pub fn bounce(status: EnhancedStatus, diagnostic: impl Into<String>) -> Outcome {
        Outcome::Bounced {
            status,
            diagnostic: diagnostic.into(),
        }
    }

    /// A temporary failure decided here (DNS, no connection).
    pub fn defer(status: EnhancedStatus, diagnostic: impl Into<String>) -> Outcome {
        Outcome::Deferred {
            status,
            diagnostic: diagnostic.into(),
        }
    }

    /// The log name of the outcome.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "Delivery",
            Outcome::Deferred { .. } => "TransientFailure",
            Outcome::Bounced { .. } => "Bounce",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, st: Option<EnhancedStatus>) -> Reply {
        Reply::multiline(code, st, vec!["text".into()])
    }

    #[test]
    fn table() {
        let s = EnhancedStatus::new;
        assert!(matches!(
            Outcome::of_reply(&reply(250, None)),
            Outcome::Delivered { .. }
        ));
        assert_eq!(
            Outcome::of_reply(&reply(451, Some(s(4, 7, 1)))),
            Outcome::Deferred {
                status: s(4, 7, 1),
                diagnostic: "451 4.7.1 text".into()
            }
        );
        assert_eq!(
            Outcome::of_reply(&reply(550, None)),
            Outcome::Bounced {
                status: s(5, 0, 0),
                diagnostic: "550 text".into()
            }
        );
        assert_eq!(
            Outcome::of_reply(&reply(554, Some(s(5, 7, 1)))),
            Outcome::Bounced {
                status: s(5, 7, 1),
                diagnostic: "554 5.7.1 text".into()
            }
        );
        assert!(matches!(
            Outcome::of_reply(&reply(354, None)),
            Outcome::Deferred { .. }
        ));
        let e = ClientError::Timeout { phase: Phase::Data };
        assert!(
            matches!(Outcome::of_error(&e), Outcome::Deferred { status, .. } if status == s(4, 4, 2))
        );
    }

    fn io(phase: Phase) -> Attempt {
        Attempt::Failed(ClientError::Io {
            phase,
            source: std::io::ErrorKind::UnexpectedEof.into(),
        })
    }

    #[test]
    fn a_reused_connection_lost_before_mail_is_not_an_attempt() {
        assert_eq!(
            verdict(&io(Phase::Mail), 2, Reuse::Reused),
            Verdict::NotAttempted
        );
        // On a fresh connection it is one: the server took the connection and then failed.
        let Verdict::Attempted(o) = verdict(&io(Phase::Mail), 2, Reuse::Fresh) else {
            panic!("an attempt");
        };
        assert_eq!(o.len(), 2);
        assert!(
            matches!(&o[0], Outcome::Deferred { status, .. } if *status == EnhancedStatus::new(4, 4, 1))
        );
        // Lost later in the transaction: the server may have the message; it counts.
        for phase in [
            Phase::Rcpt,
            Phase::Data,
            Phase::MessageData,
            Phase::EndOfData,
        ] {
            assert!(matches!(
                verdict(&io(phase), 1, Reuse::Reused),
                Verdict::Attempted(_)
            ));
        }
        // A timeout at MAIL is an attempt even when reused: the server is there but slow.
        let t = Attempt::Failed(ClientError::Timeout { phase: Phase::Mail });
        assert!(matches!(
            verdict(&t, 1, Reuse::Reused),
            Verdict::Attempted(_)
        ));
    }

    #[test]
    fn each_recipient_gets_the_reply_that_decides_it() {
        let ok = reply(250, None);
        let replies = TransactionReplies {
            mail: ok.clone(),
            rcpts: vec![
                ok.clone(),
                reply(550, Some(EnhancedStatus::new(5, 1, 1))),
                ok.clone(),
            ],
            data: Some(reply(451, None)),
        };
        let Verdict::Attempted(o) = verdict(&Attempt::Replied(replies), 3, Reuse::Fresh) else {
            panic!("an attempt");
        };
        assert!(
            matches!(o[0], Outcome::Deferred { .. }),
            "the data reply decides"
        );
        assert!(
            matches!(&o[1], Outcome::Bounced { status, .. } if *status == EnhancedStatus::new(5, 1, 1))
        );
        assert!(matches!(o[2], Outcome::Deferred { .. }));
        let refused = TransactionReplies {
            mail: reply(421, None),
            rcpts: vec![reply(421, None); 2],
            data: None,
        };
        assert_eq!(refused.distinct_failures().len(), 1, "one 421, shown once");
        let Verdict::Attempted(o) = verdict(&Attempt::Replied(refused), 2, Reuse::Reused) else {
            panic!("an attempt");
        };
        assert!(o.iter().all(|o| matches!(o, Outcome::Deferred { .. })));
    }
}
