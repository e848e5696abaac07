//! The session's security commands: STARTTLS (RFC 3207) and AUTH (RFC 4954).
//!
//! What it does: answers STARTTLS (and hands the upgrade to the connection), resets the session
//! when TLS starts, runs SASL exchanges (PLAIN, LOGIN) line by line and records the result of
//! the credential check the connection made.
//!
//! What it does not do: no handshakes, no password checks (the connection does both).
//!
//! Invariants: AUTH is offered and accepted only inside TLS unless the listener allows
//! plaintext; once TLS is on, nothing the client said before it counts; a session
//! authenticates at most once.

use super::*;

impl Session {
    /// TLS is now on (after STARTTLS or at connect on an implicit-TLS listener): the session
    /// forgets everything the client said before (RFC 3207 4.2) and waits for a new EHLO.
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.helo = None;
        self.tx = None;
        // A login made before TLS (plaintext AUTH) or an exchange in progress is forgotten
        // too: the client authenticates again inside TLS.
        self.user = None;
        self.sasl = None;
        self.mode = Mode::Command;
        self.lines = LineReader::new(self.cfg.max_command_line);
    }

    /// What TLS negotiated, if it is on.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The user the client authenticated as, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// AUTH is offered now: configured, not yet done, and inside TLS unless plaintext is allowed.
    pub(super) fn auth_offered(&self) -> bool {
        self.cfg.auth && self.user.is_none() && (self.tls.is_some() || self.cfg.auth_plaintext)
    }

    /// AUTH (RFC 4954 4).
    pub(super) fn auth(
        &mut self,
        mechanism: &str,
        initial: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Option<Action> {
        if !self.cfg.auth {
            self.error(replies::not_implemented("AUTH"), out);
            return None;
        }
        if self.helo.as_ref().is_none_or(|h| !h.extended) {
            self.error(replies::bad_sequence("send EHLO first"), out);
            return None;
        }
        if self.user.is_some() {
            self.error(replies::bad_sequence("already authenticated"), out);
            return None;
        }
        if self.tx.is_some() {
            self.error(
                replies::bad_sequence("AUTH not allowed during a transaction"),
                out,
            );
            return None;
        }
        if self.tls.is_none() && !self.cfg.auth_plaintext {
            self.error(replies::encryption_required(), out);
            return None;
        }
        let Some(mechanism) = Mechanism::parse(mechanism) else {
            self.error(replies::unknown_mechanism(), out);
            return None;
        };
        let (exchange, step) = SaslExchange::start(mechanism, initial);
        self.sasl = Some(exchange);
        self.sasl_step(step, out)
    }

    /// One client line inside a SASL exchange.
    pub(super) fn sasl_response(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Action> {
        let line = std::str::from_utf8(line).unwrap_or("\u{0}");
        let line = line.strip_suffix("\r\n").unwrap_or(line);
        let step = self
            .sasl
            .as_mut()
            .expect("inside a SASL exchange")
            .respond(line);
        self.sasl_step(step, out)
    }

    pub(super) fn sasl_step(&mut self, step: Step, out: &mut Vec<u8>) -> Option<Action> {
        match step {
            Step::Challenge(text) => {
                Reply::multiline(334, None, vec![text]).write_to(out);
                Some(Action::Flush)
            }
            Step::Done(credentials) => {
                self.sasl = None;
                Some(Action::Authenticate(credentials))
            }
            Step::Cancelled => {
                self.sasl = None;
                self.error(replies::auth_cancelled(), out);
                None
            }
            Step::Malformed => {
                self.sasl = None;
                self.error(replies::auth_malformed(), out);
                None
            }
        }
    }

    /// Reports the check of the credentials handed out by [`Action::Authenticate`].
    pub fn auth_result(&mut self, user: &str, outcome: AuthOutcome, out: &mut Vec<u8>) {
        match outcome {
            AuthOutcome::Success => {
                self.user = Some(user.to_owned());
                replies::auth_succeeded().write_to(out);
            }
            AuthOutcome::Failure => self.error(replies::auth_failed(), out),
            AuthOutcome::Throttled => self.error(replies::auth_throttled(), out),
        }
    }

    /// STARTTLS (RFC 3207).
    pub(super) fn starttls(&mut self, out: &mut Vec<u8>) -> Option<Action> {
        if self.tls.is_some() {
            self.error(replies::bad_sequence("TLS already active"), out);
            return None;
        }
        if !self.cfg.starttls {
            self.error(replies::not_implemented("STARTTLS"), out);
            return None;
        }
        if self.helo.is_none() {
            self.error(replies::bad_sequence("send EHLO first"), out);
            return None;
        }
        self.tx = None;
        replies::ready_for_tls().write_to(out);
        Some(Action::StartTls)
    }
}
