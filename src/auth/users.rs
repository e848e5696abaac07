//! The users file: who may authenticate, and with which argon2 password hash.
//!
//! What it does: parses a text file of `name:PHC-hash` lines (`#` comments and blank lines
//! ignored), verifies a password against the stored hash, and hashes new passwords with
//! argon2id (default parameters, random salt) for the administrator.
//!
//! What it does not do: no reloading or file watching, no writing of the file, no password
//! policy, no per-user authorization rules.
//!
//! Invariants: every stored hash is a parsable argon2 PHC string (checked at load time);
//! usernames are unique, non-empty and free of `:` and whitespace, compared exactly;
//! [`Users::verify`] runs one argon2 verification whether or not the user exists, so the
//! time taken does not reveal which names are known.

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2};

use super::AuthError;

/// A fixed argon2id hash (of a random, discarded password) verified for unknown users so
/// that their rejection costs as much as a wrong password. Default parameters, like
/// [`hash_password`].
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vn8dNu8Y1JbxWcmWkdO+o1T1ufHTiCgoUGYtPptjY5k";

/// The set of users allowed to authenticate.
#[derive(Clone, Default)]
pub struct Users {
    hashes: HashMap<String, String>,
}

impl std::fmt::Debug for Users {
    /// Shows the user count only: names and hashes stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.hashes.len())
            .finish()
    }
}

impl Users {
    /// Reads and parses the users file at `path`; errors name the file and line.
    pub fn load(path: &Path) -> Result<Users, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Users::parse(&text, &path.display().to_string())
    }

    /// Parses users-file text; `origin` names its source in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Users, AuthError> {
        let mut hashes = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let syntax = |reason: &str| AuthError::Syntax {
                origin: origin.to_owned(),
                line: index + 1,
                reason: reason.to_owned(),
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| syntax("expected name:hash"))?;
            if !valid_username(name) {
                return Err(syntax("invalid user name (empty, or contains whitespace)"));
            }
            let parsed =
                PasswordHash::new(hash).map_err(|_| syntax("invalid argon2 PHC hash string"))?;
            if Algorithm::new(parsed.algorithm.as_str()).is_err() {
                return Err(syntax("hash is not an argon2 PHC string"));
            }
            if hashes.insert(name.to_owned(), hash.to_owned()).is_some() {
                return Err(syntax("duplicate user name"));
            }
        }
        Ok(Users { hashes })
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True when no user is defined.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// True when the user exists and `password` matches its hash. Unknown users are checked
    /// against a fixed dummy hash so that the answer takes about the same time.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let (hash, known) = match self.hashes.get(user) {
            Some(hash) => (hash.as_str(), true),
            None => (DUMMY_HASH, false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        matches && known
    }
}

/// True for a non-empty name without `:` or whitespace.
fn valid_username(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c == ':' || c.is_whitespace())
}

/// Hashes `password` with argon2id, default parameters and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_is_valid_argon2id() {
        let parsed = PasswordHash::new(DUMMY_HASH).expect("dummy hash parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert!(!Users::default().verify("nobody", ""));
    }

    #[test]
    fn hash_and_verify_round_trip() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        let other = hash_password("correct horse").expect("hash");
        assert_ne!(hash, other, "salts are random");
        let text = format!("# users\n\nalice:{hash}\n  bob:{other}  \n");
        let users = Users::parse(&text, "test").expect("parse");
        assert_eq!(users.len(), 2);
        assert!(users.verify("alice", "correct horse"));
        assert!(users.verify("bob", "correct horse"));
        assert!(!users.verify("alice", "wrong"));
        assert!(!users.verify("Alice", "correct horse"));
        assert!(!users.verify("carol", "correct horse"));
        assert!(!users.verify("", ""));
    }

    #[test]
    fn syntax_errors_name_origin_and_line() {
        let hash = hash_password("pw").expect("hash");
        let cases = [
            ("no colon here".to_owned(), 1, "expected"),
            (format!("\n:{hash}"), 2, "invalid user name"),
            (format!("a b:{hash}"), 1, "invalid user name"),
            ("alice:not-a-hash".to_owned(), 1, "PHC"),
            (
                "alice:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2g".to_owned(),
                1,
                "argon2",
            ),
            (format!("#c\nalice:{hash}\nalice:{hash}"), 3, "duplicate"),
        ];
        for (text, line, needle) in cases {
            let err = Users::parse(&text, "users.txt").expect_err(&text);
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("users.txt:{line}:")),
                "{message}"
            );
            assert!(message.contains(needle), "{message}");
            assert!(!message.contains("pw"));
        }
    }

    #[test]
    fn load_from_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        let hash = hash_password("s3cret").expect("hash");
        std::fs::write(&path, format!("alice:{hash}\n")).expect("write");
        let users = Users::load(&path).expect("load");
        assert!(users.verify("alice", "s3cret"));

        std::fs::write(&path, "broken\n").expect("write");
        let message = Users::load(&path).expect_err("bad line").to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(":1:"), "{message}");

        let missing = dir.path().join("missing");
        let message = Users::load(&missing).expect_err("missing").to_string();
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn empty_file_has_no_users() {
        let users = Users::parse("# nothing\n\n", "x").expect("parse");
        assert!(users.is_empty());
        assert!(!users.verify("root", ""));
    }
}
