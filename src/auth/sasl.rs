//! SASL exchanges for SMTP AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN, sans-IO.
//!
//! What it does: turns the AUTH command's mechanism name, optional initial response and the
//! client's following lines into either the next challenge to send (after `334 `), the
//! decoded credentials, a cancellation (`*`) or a malformed-input verdict.
//!
//! What it does not do: no password checking (see [`super::users`]), no reply codes beyond
//! documenting which one each [`Step`] maps to, no line framing (the caller hands over one
//! line without CRLF), no authorization-identity policy.
//!
//! Invariants: a [`SaslExchange`] ends after the first [`Step`] that is not a challenge;
//! every decoded field is at most [`MAX_FIELD_LEN`] octets, valid UTF-8 and free of NUL.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Longest accepted decoded field (authzid, username or password), in octets.
pub const MAX_FIELD_LEN: usize = 512;

/// Longest accepted base64 client line: a PLAIN response of three maximal fields.
const MAX_LINE_LEN: usize = (3 * MAX_FIELD_LEN + 2).div_ceil(3) * 4;

/// The LOGIN challenge `Username:` in base64.
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// The LOGIN challenge `Password:` in base64.
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// A supported SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616 PLAIN: `authzid NUL authcid NUL passwd` in one message.
    Plain,
    /// The LOGIN mechanism: username and password in two separate responses.
    Login,
}

impl Mechanism {
    /// Parses the mechanism name of an AUTH command, case-insensitively; `None` if unsupported.
    pub fn parse(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    /// The canonical (upper-case) name, as advertised in EHLO.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// The identities and secret a client presented.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authorization identity; empty when the client did not ask to act as someone else.
    pub authzid: String,
    /// The authentication identity (the user name to check).
    pub username: String,
    /// The password, to be verified and then dropped.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the server does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `334 ` followed by this base64 text and wait for the next client line.
    Challenge(String),
    /// The exchange is complete; verify these credentials.
    Done(Credentials),
    /// The client sent `*`: reply `501 5.0.0` and end the exchange.
    Cancelled,
    /// Bad base64 or bad mechanism structure: reply `501 5.5.2` and end the exchange.
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// PLAIN waiting for its single response.
    PlainResponse,
    /// LOGIN waiting for the username.
    LoginUsername,
    /// LOGIN waiting for the password, holding the username.
    LoginPassword(String),
    /// A final step was returned; further lines are malformed.
    Finished,
}

/// One SASL exchange, fed one client line at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslExchange {
    state: State,
}

impl SaslExchange {
    /// Starts an exchange for `mechanism` with the AUTH command's optional initial response
    /// (`"="` stands for an empty one). Returns the exchange and its first step.
    pub fn start(mechanism: Mechanism, initial_response: Option<&str>) -> (SaslExchange, Step) {
        let mut exchange = SaslExchange {
            state: match mechanism {
                Mechanism::Plain => State::PlainResponse,
                Mechanism::Login => State::LoginUsername,
            },
        };
        let step = match initial_response {
            Some(text) => exchange.respond(text),
            None => match mechanism {
                // RFC 4616: an empty challenge asks for the response.
                Mechanism::Plain => Step::Challenge(String::new()),
                Mechanism::Login => Step::Challenge(LOGIN_USERNAME_CHALLENGE.to_owned()),
            },
        };
        (exchange, step)
    }

    /// Handles one client line (without CRLF) and returns the next step.
    pub fn respond(&mut self, line: &str) -> Step {
        let state = std::mem::replace(&mut self.state, State::Finished);
        if state == State::Finished {
            return Step::Malformed;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line == "*" {
            return Step::Cancelled;
        }
        let Some(decoded) = decode(line) else {
            return Step::Malformed;
        };
        match state {
            State::PlainResponse => parse_plain(&decoded).map_or(Step::Malformed, Step::Done),
            State::LoginUsername => match login_field(decoded) {
                Some(username) => {
                    self.state = State::LoginPassword(username);
                    Step::Challenge(LOGIN_PASSWORD_CHALLENGE.to_owned())
                }
                None => Step::Malformed,
            },
            State::LoginPassword(username) => match login_field(decoded) {
                Some(password) => Step::Done(Credentials {
                    authzid: String::new(),
                    username,
                    password,
                }),
                None => Step::Malformed,
            },
            State::Finished => Step::Malformed,
        }
    }

    /// True once a final step (done, cancelled, malformed) has been returned.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }
}

/// Decodes a base64 client response; `"="` is the empty response.
fn decode(line: &str) -> Option<Vec<u8>> {
    if line == "=" {
        return Some(Vec::new());
    }
    if line.len() > MAX_LINE_LEN {
        return None;
    }
    STANDARD.decode(line).ok()
}

/// Splits a PLAIN message into exactly three NUL-separated fields.
fn parse_plain(message: &[u8]) -> Option<Credentials> {
    let mut fields = message.split(|&b| b == 0);
    let (Some(authzid), Some(username), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    if username.is_empty() {
        return None;
    }
    Some(Credentials {
        authzid: field(authzid)?,
        username: field(username)?,
        password: field(password)?,
    })
}

/// A LOGIN response: non-empty, no NUL, bounded, UTF-8.
fn login_field(decoded: Vec<u8>) -> Option<String> {
    if decoded.is_empty() || decoded.contains(&0) {
        return None;
    }
    field(&decoded)
}

/// A bounded UTF-8 field.
fn field(bytes: &[u8]) -> Option<String> {
    if bytes.len() > MAX_FIELD_LEN {
        return None;
    }
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    fn creds(authzid: &str, username: &str, password: &str) -> Step {
        Step::Done(Credentials {
            authzid: authzid.into(),
            username: username.into(),
            password: password.into(),
        })
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(Mechanism::parse("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse("PLAIN"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse("LoGiN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
        assert_eq!(Mechanism::parse(""), None);
        assert_eq!(Mechanism::Login.name(), "LOGIN");
    }

    #[test]
    fn plain_with_initial_response() {
        let (ex, step) = SaslExchange::start(Mechanism::Plain, Some(&b64(b"\0alice\0secret")));
        assert_eq!(step, creds("", "alice", "secret"));
        assert!(ex.is_finished());
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some(&b64(b"bob\0alice\0pw")));
        assert_eq!(step, creds("bob", "alice", "pw"));
    }

    #[test]
    fn plain_without_initial_response() {
        let (mut ex, step) = SaslExchange::start(Mechanism::Plain, None);
        assert_eq!(step, Step::Challenge(String::new()));
        assert_eq!(ex.respond(&b64(b"\0u\0p")), creds("", "u", "p"));
        assert_eq!(ex.respond(&b64(b"\0u\0p")), Step::Malformed);
    }

    #[test]
    fn plain_empty_password_is_structurally_valid() {
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some(&b64(b"\0u\0")));
        assert_eq!(step, creds("", "u", ""));
    }

    #[test]
    fn plain_structure_errors() {
        for bad in [
            &b"no-nuls"[..],
            b"\0only-one-nul",
            b"\0u\0p\0extra",
            b"\0\0password",
            b"\0u\0\xff\xfe",
        ] {
            let (_, step) = SaslExchange::start(Mechanism::Plain, Some(&b64(bad)));
            assert_eq!(step, Step::Malformed, "{bad:?}");
        }
        // "=" is the empty response: no fields at all.
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some("="));
        assert_eq!(step, Step::Malformed);
    }

    #[test]
    fn bad_base64() {
        for bad in ["not base64!", "YWJj=", "YQ", "===="] {
            let (_, step) = SaslExchange::start(Mechanism::Plain, Some(bad));
            assert_eq!(step, Step::Malformed, "{bad}");
        }
    }

    #[test]
    fn cancel() {
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some("*"));
        assert_eq!(step, Step::Cancelled);
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None);
        assert_eq!(ex.respond("*"), Step::Cancelled);
        assert!(ex.is_finished());
    }

    #[test]
    fn login_full_exchange() {
        let (mut ex, step) = SaslExchange::start(Mechanism::Login, None);
        assert_eq!(step, Step::Challenge("VXNlcm5hbWU6".into()));
        assert_eq!(
            ex.respond(&b64(b"alice")),
            Step::Challenge("UGFzc3dvcmQ6".into())
        );
        assert_eq!(ex.respond(&b64(b"secret")), creds("", "alice", "secret"));
        assert!(ex.is_finished());
    }

    #[test]
    fn login_with_initial_username() {
        let (mut ex, step) = SaslExchange::start(Mechanism::Login, Some(&b64(b"alice")));
        assert_eq!(step, Step::Challenge(LOGIN_PASSWORD_CHALLENGE.into()));
        assert_eq!(ex.respond(&b64(b"pw")), creds("", "alice", "pw"));
    }

    #[test]
    fn login_rejects_nul_and_empty() {
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None);
        assert_eq!(ex.respond(&b64(b"al\0ice")), Step::Malformed);
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None);
        ex.respond(&b64(b"alice"));
        assert_eq!(ex.respond(&b64(b"p\0w")), Step::Malformed);
        let (_, step) = SaslExchange::start(Mechanism::Login, Some("="));
        assert_eq!(step, Step::Malformed);
    }

    #[test]
    fn length_limits() {
        let long = vec![b'a'; MAX_FIELD_LEN + 1];
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None);
        assert_eq!(ex.respond(&b64(&long)), Step::Malformed);
        let ok = vec![b'a'; MAX_FIELD_LEN];
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None);
        assert!(matches!(ex.respond(&b64(&ok)), Step::Challenge(_)));

        let mut plain = vec![0u8];
        plain.extend_from_slice(&ok);
        plain.push(0);
        plain.extend_from_slice(&long);
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some(&b64(&plain)));
        assert_eq!(step, Step::Malformed);
        // Three maximal fields still fit the line cap.
        let mut plain = ok.clone();
        plain.push(0);
        plain.extend_from_slice(&ok);
        plain.push(0);
        plain.extend_from_slice(&ok);
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some(&b64(&plain)));
        assert!(matches!(step, Step::Done(_)));
        // An absurdly long line is refused before decoding.
        let huge = "A".repeat(MAX_LINE_LEN + 4);
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some(&huge));
        assert_eq!(step, Step::Malformed);
    }

    #[test]
    fn debug_hides_password() {
        let c = Credentials {
            authzid: String::new(),
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
