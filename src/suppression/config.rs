//! The `[suppression]` section of the configuration.
//!
//! What it does: says where the list lives, where a suppressed recipient is stopped (at RCPT or
//! at delivery), which bounce classes add a recipient, how long such an entry lasts, whether a
//! recipient dropped at delivery gets a DSN, and when the log is compacted.
//!
//! What it does not do: no loading or checking of the list (see [`super::Suppression`]).
//!
//! Invariants: every key has a default; `hard_bounce_classes` names only known bounce classes
//! (checked by [`SuppressionSection::check`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ByteSize, HumanDuration};
use crate::shaping::BounceClass;

/// Where a suppressed recipient is stopped (`suppression.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refused at RCPT with `550 5.7.1` when the client is trusted or authenticated (the
    /// submitter learns at once); anything else (and mail queued before the entry) is dropped
    /// at delivery.
    #[default]
    Rcpt,
    /// Accepted, then dropped at delivery with a `Suppressed` event.
    Delivery,
}

/// `[suppression]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuppressionSection {
    /// Whether the list is kept and honoured at all.
    pub enabled: bool,
    /// The list's directory; empty = `<spool.path>/suppression`.
    pub path: PathBuf,
    /// Where a suppressed recipient is stopped.
    pub mode: Mode,
    /// Bounce classes (as in the event log) whose bounces add the recipient.
    pub hard_bounce_classes: Vec<String>,
    /// How long an entry added by a bounce lasts; 0 = until removed.
    pub hard_bounce_expiry: HumanDuration,
    /// A recipient dropped at delivery is reported to the sender in a DSN (if it asked for
    /// failure reports).
    pub dsn: bool,
    /// The log is compacted when it is larger than this and than twice its size after the
    /// last compaction.
    pub compact_size: ByteSize,
}

impl Default for SuppressionSection {
    fn default() -> Self {
        SuppressionSection {
            enabled: true,
            path: PathBuf::new(),
            mode: Mode::Rcpt,
            hard_bounce_classes: vec![BounceClass::BadMailbox.as_str().to_owned()],
            hard_bounce_expiry: HumanDuration::secs(0),
            dsn: false,
            compact_size: ByteSize::mib(64),
        }
    }
}

impl SuppressionSection {
    /// The list's directory, given the spool's.
    pub fn dir(&self, spool: &Path) -> PathBuf {
        match self.path.as_os_str().is_empty() {
            true => spool.join("suppression"),
            false => self.path.clone(),
        }
    }

    /// The configured hard-bounce classes, or the name that is not one.
    pub fn classes(&self) -> Result<Vec<BounceClass>, String> {
        self.hard_bounce_classes
            .iter()
            .map(|n| BounceClass::from_name(n).ok_or_else(|| n.clone()))
            .collect()
    }

    /// Checks the values: `(key, problem)` for the first bad one.
    pub fn check(&self) -> Result<(), (String, String)> {
        if let Err(name) = self.classes() {
            let names: Vec<&str> = BounceClass::ALL.iter().map(|c| c.as_str()).collect();
            return Err((
                "suppression.hard_bounce_classes".to_owned(),
                format!("{name:?}: expected one of {}", names.join(", ")),
            ));
        }
        if self.compact_size.0 < 1 << 20 {
            return Err((
                "suppression.compact_size".to_owned(),
                "at least 1MiB".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn values_are_checked_and_the_directory_defaults_under_the_spool() {
        let c = Config::parse("[suppression]\nmode = \"delivery\"\nhard_bounce_expiry = \"90d\"\n")
            .unwrap();
        assert_eq!(c.suppression.mode, super::Mode::Delivery);
        assert_eq!(c.suppression.hard_bounce_expiry.0.as_secs(), 90 * 86_400);
        assert_eq!(
            c.suppression.dir(std::path::Path::new("/var/spool")),
            std::path::Path::new("/var/spool/suppression")
        );
        let e = Config::parse("[suppression]\nhard_bounce_classes = [\"bad_mailbox\", \"nope\"]\n")
            .unwrap_err();
        assert!(
            e.to_string().contains("suppression.hard_bounce_classes"),
            "{e}"
        );
        let e = Config::parse("[suppression]\nmode = \"sometimes\"\n").unwrap_err();
        assert!(e.to_string().contains("mode"), "{e}");
    }
}
