//! The credential files a configuration names for outbound AUTH: `delivery.relay_auth_file`
//! and each `[[routes]]` entry's `auth_file`.
//!
//! What it does: reads every named file (a file named twice is read once) when the
//! configuration is loaded, keeps the credentials by path, and notes the files that every user
//! of the host may read (a warning, not an error).
//!
//! What it does not do: no SASL and no decision of when to authenticate (delivery does that),
//! no watching of the files (they are read again with the configuration, on SIGHUP).
//!
//! Invariants: an error names the configuration key of the file; the passwords are never in
//! `Debug` output, errors or warnings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ConfigError;
use crate::auth::{ClientCredentials, CredentialsError};

/// The credentials of a loaded configuration, by file.
#[derive(Clone, Default)]
pub struct Secrets {
    by_path: HashMap<PathBuf, Arc<ClientCredentials>>,
    /// (key, file) of the files every user may read.
    exposed: Vec<(String, PathBuf)>,
}

impl std::fmt::Debug for Secrets {
    /// The files and user names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.by_path.iter().map(|(p, c)| (p, c.username())))
            .finish()
    }
}

impl Secrets {
    /// Reads each file named at one of `files` (key, path).
    pub fn load<'a>(
        files: impl IntoIterator<Item = (String, &'a Path)>,
    ) -> Result<Secrets, ConfigError> {
        let mut secrets = Secrets::default();
        for (key, path) in files {
            if secrets.by_path.contains_key(path) {
                continue;
            }
            let file = ClientCredentials::load(path).map_err(|e| ConfigError::Invalid {
                key: key.clone(),
                problem: match e {
                    CredentialsError::Read { .. } => e.to_string(),
                    CredentialsError::Syntax { .. } => format!("credentials file {e}"),
                },
            })?;
            if file.world_readable {
                secrets.exposed.push((key, path.to_owned()));
            }
            secrets
                .by_path
                .insert(path.to_owned(), Arc::new(file.credentials));
        }
        Ok(secrets)
    }

    /// The credentials read from `path`.
    pub fn get(&self, path: &Path) -> Option<&Arc<ClientCredentials>> {
        self.by_path.get(path)
    }

    /// One sentence per file that every user of the host may read.
    pub fn warnings(&self) -> Vec<String> {
        self.exposed
            .iter()
            .map(|(key, path)| {
                format!(
                    "{key}: {} can be read by every user of this host; make it readable by the \
                     MTA's user only (chmod 600)",
                    path.display()
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_read_once_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("relay.auth");
        std::fs::write(&good, "relay:hunter2\n").unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o640)).unwrap();
        let s = Secrets::load([
            ("delivery.relay_auth_file".to_owned(), good.as_path()),
            ("routes[0].auth_file".to_owned(), good.as_path()),
        ])
        .unwrap();
        assert_eq!(s.get(&good).unwrap().username(), "relay");
        assert!(s.warnings().is_empty());
        assert!(!format!("{s:?}").contains("hunter2"));

        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = Secrets::load([("routes[2].auth_file".to_owned(), good.as_path())]).unwrap();
        let w = s.warnings();
        assert!(
            w.len() == 1 && w[0].starts_with("routes[2].auth_file: "),
            "{w:?}"
        );

        let bad = dir.path().join("bad.auth");
        std::fs::write(&bad, "no colon hunter2\n").unwrap();
        for path in [bad.as_path(), &dir.path().join("missing")] {
            let e = Secrets::load([("routes[1].auth_file".to_owned(), path)]).unwrap_err();
            let e = e.to_string();
            assert!(e.contains("`routes[1].auth_file`"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
