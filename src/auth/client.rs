//! The client side of SMTP AUTH (RFC 4954), sans-IO: the credentials this MTA presents to a
//! next hop (a smarthost), the file they are kept in, and the lines that carry them.
//!
//! What it does: reads a credentials file (one `username:password` line, `#` comments and
//! blank lines ignored, like the value of a Postfix `smtp_sasl_password_maps` entry), says
//! whether other users of the host may read it, picks a mechanism from those a server offers
//! (PLAIN when offered, else LOGIN) and writes the client's lines: `AUTH PLAIN` with the
//! initial response (RFC 4616: empty authorization identity, user, password), or the LOGIN
//! command and its two base64 responses.
//!
//! What it does not do: no sockets, no reading of replies, no TLS decision (the connection
//! refuses to authenticate outside TLS), no other mechanisms.
//!
//! Invariants: the password is never in `Debug` output, an error or a log line; a user name is
//! non-empty, without `:`, white space or control characters; a password is non-empty,
//! without NUL, CR or LF; each is at most [`MAX_FIELD_LEN`] octets (what our own server
//! accepts), so every line written here is short.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::sasl::{MAX_FIELD_LEN, Mechanism};

/// Why a credentials file was refused. Never contains the password.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not hold exactly one valid `username:password` line.
    #[error("{origin}: {problem}")]
    Syntax {
        /// The file (or `<text>`).
        origin: String,
        /// What is wrong, with the line number when there is one.
        problem: String,
    },
}

/// A user name and password for a next hop.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    username: String,
    password: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A credentials file as read: its credentials, and whether every user of the host may read it.
#[derive(Debug)]
pub struct CredentialsFile {
    /// The credentials.
    pub credentials: ClientCredentials,
    /// The file's mode lets every user read it (`o+r`).
    pub world_readable: bool,
}

impl ClientCredentials {
    /// Credentials from their parts, checked as a file line is.
    pub fn new(username: &str, password: &str) -> Result<ClientCredentials, String> {
        if username.is_empty() {
            return Err("empty user name".to_owned());
        }
        if username
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err("the user name has a ':', white space or a control character".to_owned());
        }
        if password.is_empty() {
            return Err("empty password".to_owned());
        }
        if password.contains(['\0', '\r', '\n']) {
            return Err("the password has a NUL, CR or LF".to_owned());
        }
        if username.len() > MAX_FIELD_LEN || password.len() > MAX_FIELD_LEN {
            return Err(format!(
                "the user name and the password are each at most {MAX_FIELD_LEN} octets"
            ));
        }
        Ok(ClientCredentials {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    /// Reads the credentials file at `path`.
    pub fn load(path: &Path) -> Result<CredentialsFile, CredentialsError> {
        let read = |source| CredentialsError::Read {
            path: path.display().to_string(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(read)?;
        let mode = std::fs::metadata(path).map_err(read)?;
        let credentials = ClientCredentials::parse(&text, &path.display().to_string())?;
        use std::os::unix::fs::PermissionsExt;
        Ok(CredentialsFile {
            credentials,
            world_readable: mode.permissions().mode() & 0o004 != 0,
        })
    }

    /// Parses the text of a credentials file: exactly one `username:password` line; the
    /// password is everything after the first `:` up to the line end (spaces included).
    pub fn parse(text: &str, origin: &str) -> Result<ClientCredentials, CredentialsError> {
        let syntax = |problem: String| CredentialsError::Syntax {
            origin: origin.to_owned(),
            problem,
        };
        let mut found = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            if found.is_some() {
                return Err(syntax(format!(
                    "line {}: a second credentials line (one username:password per file)",
                    i + 1
                )));
            }
            let Some((user, password)) = line.split_once(':') else {
                return Err(syntax(format!(
                    "line {}: expected username:password",
                    i + 1
                )));
            };
            let credentials = ClientCredentials::new(user, password)
                .map_err(|p| syntax(format!("line {}: {p}", i + 1)))?;
            found = Some(credentials);
        }
        found.ok_or_else(|| syntax("no username:password line".to_owned()))
    }

    /// The user name (the authentication identity).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// `AUTH PLAIN <initial response>` (RFC 4954 4, RFC 4616 2: no authorization identity).
    pub fn write_plain(&self, out: &mut Vec<u8>) {
        let mut message = Vec::with_capacity(self.username.len() + self.password.len() + 2);
        message.push(0);
        message.extend_from_slice(self.username.as_bytes());
        message.push(0);
        message.extend_from_slice(self.password.as_bytes());
        out.extend_from_slice(b"AUTH PLAIN ");
        out.extend_from_slice(STANDARD.encode(&message).as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// The LOGIN response to the first challenge: the user name in base64.
    pub fn write_login_username(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(STANDARD.encode(&self.username).as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// The LOGIN response to the second challenge: the password in base64.
    pub fn write_login_password(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(STANDARD.encode(&self.password).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The mechanism to use with a server offering `offered` (EHLO's AUTH keywords, upper case):
/// PLAIN, which needs one round trip, else LOGIN; None when it offers neither.
pub fn choose(offered: &[String]) -> Option<Mechanism> {
    let has = |m: Mechanism| offered.iter().any(|o| o == m.name());
    [Mechanism::Plain, Mechanism::Login]
        .into_iter()
        .find(|&m| has(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sasl::{SaslExchange, Step};

    fn creds() -> ClientCredentials {
        ClientCredentials::new("alice@example.net", "s3cret: with spaces").unwrap()
    }

    /// The line without its CRLF, as the server's exchange takes it.
    fn line(out: &[u8]) -> &str {
        std::str::from_utf8(out)
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap()
    }

    #[test]
    fn plain_initial_response_is_what_a_server_decodes() {
        let mut out = Vec::new();
        creds().write_plain(&mut out);
        let text = line(&out);
        let response = text.strip_prefix("AUTH PLAIN ").unwrap();
        assert_eq!(
            STANDARD.decode(response).unwrap(),
            b"\0alice@example.net\0s3cret: with spaces"
        );
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some(response));
        let Step::Done(c) = step else {
            panic!("{step:?}")
        };
        assert_eq!(
            (c.authzid.as_str(), c.username.as_str(), c.password.as_str()),
            ("", "alice@example.net", "s3cret: with spaces")
        );
    }

    #[test]
    fn login_responses_are_what_a_server_decodes() {
        let c = creds();
        let (mut ex, first) = SaslExchange::start(Mechanism::Login, None);
        assert!(matches!(first, Step::Challenge(_)));
        let mut out = Vec::new();
        c.write_login_username(&mut out);
        assert_eq!(line(&out), "YWxpY2VAZXhhbXBsZS5uZXQ=");
        assert!(matches!(ex.respond(line(&out)), Step::Challenge(_)));
        out.clear();
        c.write_login_password(&mut out);
        let Step::Done(got) = ex.respond(line(&out)) else {
            panic!("LOGIN did not complete")
        };
        assert_eq!(got.username, "alice@example.net");
        assert_eq!(got.password, "s3cret: with spaces");
    }

    #[test]
    fn plain_is_preferred_then_login() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(choose(&v(&["LOGIN", "PLAIN"])), Some(Mechanism::Plain));
        assert_eq!(choose(&v(&["CRAM-MD5", "LOGIN"])), Some(Mechanism::Login));
        assert_eq!(choose(&v(&["CRAM-MD5", "XOAUTH2"])), None);
        assert_eq!(choose(&[]), None);
    }

    #[test]
    fn the_file_has_one_line_and_comments() {
        let c = ClientCredentials::parse(
            "# relay account\n\n  # indented comment\nrelay-user:pa:ss word \r\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.username(), "relay-user");
        let mut out = Vec::new();
        c.write_login_password(&mut out);
        assert_eq!(STANDARD.decode(line(&out)).unwrap(), b"pa:ss word ");
    }

    #[test]
    fn bad_files_say_why_without_the_password() {
        for (text, why) in [
            ("", "no username:password line"),
            ("# only a comment\n", "no username:password line"),
            ("nocolon\n", "line 1: expected username:password"),
            (":hunter2\n", "line 1: empty user name"),
            ("us er:hunter2\n", "line 1: the user name has"),
            ("user:\n", "line 1: empty password"),
            (
                "a:hunter2\nb:hunter2\n",
                "line 2: a second credentials line",
            ),
        ] {
            let e = ClientCredentials::parse(text, "creds")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("creds: ") && e.contains(why), "{text:?}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let long = format!("u:{}", "p".repeat(MAX_FIELD_LEN + 1));
        assert!(ClientCredentials::parse(&long, "f").is_err());
        assert!(ClientCredentials::new("u", "a\0b").is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", creds());
        assert!(
            shown.contains("alice@example.net") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn load_reads_the_file_and_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.auth");
        std::fs::write(&path, "u:p\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let f = ClientCredentials::load(&path).unwrap();
        assert_eq!(f.credentials.username(), "u");
        assert!(!f.world_readable);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(ClientCredentials::load(&path).unwrap().world_readable);
        let missing = ClientCredentials::load(&dir.path().join("missing")).unwrap_err();
        assert!(
            matches!(missing, CredentialsError::Read { .. }),
            "{missing}"
        );
    }
}
