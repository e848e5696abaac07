//! AUTH on an outbound connection (RFC 4954), for a next hop configured with credentials (a
//! smarthost).
//!
//! What it does: after EHLO inside TLS, authenticates with PLAIN and its initial response (RFC
//! 4954 4, RFC 4616) when the server offers it, else with LOGIN (the user name and the
//! password, base64, each after a `334` challenge). Every reply is read with the connection's
//! reply reader (its size and line caps, one deadline of the command timeout). `235` is
//! success; any other final reply ends it: a `4xx` keeps its status, a `5xx` (such as `535
//! 5.7.8`, wrong credentials) becomes the same status in class 4, because a bad password is the
//! operator's to fix and must not bounce the queue.
//!
//! What it does not do: no TLS of its own (the caller starts it), no other mechanisms, no
//! memory of failures (the queue defers the destination's mail and backs off).
//!
//! Invariants: credentials are written only on a stream where TLS was established; the
//! password is never in an error or a log line; a connection authenticates at most once, and
//! one left inside an exchange (an unexpected `334`) is not used again.

use super::{ClientError, Connection};
use crate::auth::ClientCredentials;
use crate::auth::client::choose;
use crate::auth::sasl::Mechanism;
use crate::delivery::phase::Phase;
use crate::smtp::{EnhancedStatus, Reply};

/// The credentials were not sent: TLS was not established (RFC 5248 X.7.10, encryption
/// needed).
fn withheld(user: &str, why: &str) -> ClientError {
    ClientError::Auth {
        status: EnhancedStatus::new(4, 7, 10),
        reason: format!(
            "credentials for {user} not sent: TLS not established ({why}); AUTH is only sent over TLS"
        ),
    }
}

/// A TLS failure on a connection that was to carry credentials says that they were not sent;
/// other errors are kept as they are.
pub(super) fn unless_tls(e: ClientError, auth: Option<&ClientCredentials>) -> ClientError {
    match (e, auth) {
        (ClientError::Tls { reason, .. }, Some(c)) => withheld(c.username(), &reason),
        (e, _) => e,
    }
}

/// The deferral status of a refused AUTH: the server's own detail in class 4, else `4.7.8`
/// for `535` and `4.7.0` for anything else.
fn refused_status(reply: &Reply) -> EnhancedStatus {
    match reply.status {
        Some(s) if matches!(s.class, 4 | 5) => EnhancedStatus::new(4, s.subject, s.detail),
        _ if reply.code == 535 => EnhancedStatus::new(4, 7, 8),
        _ => EnhancedStatus::new(4, 7, 0),
    }
}

impl Connection {
    /// Authenticates with `credentials` (see the module header).
    pub(super) async fn authenticate(
        &mut self,
        credentials: &ClientCredentials,
    ) -> Result<(), ClientError> {
        let user = credentials.username();
        if self.tls.is_none() {
            self.usable = false;
            return Err(withheld(user, "no STARTTLS"));
        }
        let Some(mechanism) = choose(&self.ext.auth) else {
            let offered = match self.ext.auth.is_empty() {
                true => "no AUTH".to_owned(),
                false => format!("AUTH {} only", self.ext.auth.join(" ")),
            };
            return Err(ClientError::Auth {
                status: EnhancedStatus::new(4, 7, 0),
                reason: format!(
                    "credentials for {user} not sent: the server offers {offered} \
                     (this MTA uses PLAIN or LOGIN)"
                ),
            });
        };
        let reply = match mechanism {
            Mechanism::Plain => {
                credentials.write_plain(&mut self.out);
                self.auth_step().await?
            }
            Mechanism::Login => {
                self.out.extend_from_slice(b"AUTH LOGIN\r\n");
                let mut reply = self.auth_step().await?;
                if reply.code == 334 {
                    credentials.write_login_username(&mut self.out);
                    reply = self.auth_step().await?;
                }
                if reply.code == 334 {
                    credentials.write_login_password(&mut self.out);
                    reply = self.auth_step().await?;
                }
                reply
            }
        };
        if reply.code == 235 {
            self.auth = Some(user.to_owned());
            return Ok(());
        }
        if reply.code == 334 {
            // Still inside the exchange: nothing more can be said on this connection.
            self.usable = false;
        }
        Err(ClientError::Auth {
            status: refused_status(&reply),
            reason: format!("AUTH {} as {user} refused: {reply}", mechanism.name()),
        })
    }

    /// Writes what is waiting in the output buffer and reads the reply.
    async fn auth_step(&mut self) -> Result<Reply, ClientError> {
        self.flush(Phase::Auth).await?;
        self.read_reply(Phase::Auth, self.timeouts.command).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_defer_with_the_servers_detail() {
        let r = |code, status: Option<EnhancedStatus>| {
            Reply::multiline(code, status, vec!["no".into()])
        };
        let s = EnhancedStatus::new;
        assert_eq!(refused_status(&r(535, Some(s(5, 7, 8)))), s(4, 7, 8));
        assert_eq!(refused_status(&r(535, None)), s(4, 7, 8));
        assert_eq!(refused_status(&r(454, Some(s(4, 7, 0)))), s(4, 7, 0));
        assert_eq!(refused_status(&r(534, Some(s(5, 7, 9)))), s(4, 7, 9));
        assert_eq!(refused_status(&r(504, None)), s(4, 7, 0));
        assert_eq!(refused_status(&r(334, None)), s(4, 7, 0));
    }

    #[test]
    fn a_tls_failure_with_credentials_withholds_them() {
        let creds = ClientCredentials::new("relay", "hunter2").unwrap();
        let tls = || ClientError::Tls {
            reason: "STARTTLS not offered".into(),
            handshake: false,
        };
        let e = unless_tls(tls(), Some(&creds));
        let ClientError::Auth { status, reason } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(*status, EnhancedStatus::new(4, 7, 10));
        assert!(
            reason.contains("relay") && reason.contains("STARTTLS not offered"),
            "{reason}"
        );
        assert!(!reason.contains("hunter2"));
        assert!(matches!(unless_tls(tls(), None), ClientError::Tls { .. }));
    }
}
