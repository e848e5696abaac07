//! The one place that decides what a delivery attempt means for a recipient.
//!
//! What it does: maps a server reply or a client failure to `Delivered`, `Deferred` or
//! `Bounced`, with the enhanced status code and the diagnostic that go into the log and any DSN.
//!
//! What it does not do: no retry timing (the scheduler), no records (the delivery stage).
//!
//! Invariants: 2xx → delivered; 4xx, timeouts, network and TLS failures → deferred; 5xx →
//! bounced. Nothing else.

use super::client::{ClientError, default_status};
use crate::smtp::{EnhancedStatus, Reply};

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
        let e = ClientError::Timeout { stage: "DATA" };
        assert!(
            matches!(Outcome::of_error(&e), Outcome::Deferred { status, .. } if status == s(4, 4, 2))
        );
    }
}
