//! The shaping file's error type and the value parsers its parts share (rates).
//!
//! What it does: [`ShapingError`] names the key and the problem of a refused file;
//! [`parse_rate`] reads `"10/s"`-style rates.
//!
//! What it does not do: no file structure (`config.rs`), no rules (`rules.rs`), no bounce
//! classes (`bounce_class.rs`); this module imports none of them, so they all depend on it
//! and not on each other for these.
//!
//! Invariants: a parsed rate allows at least one message over a period of more than zero and
//! at most 100 years.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::HumanDuration;
use crate::queue::Rate;

/// Why a shaping file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ShapingError {
    /// The file could not be read.
    #[error("cannot read {path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        err: std::io::Error,
    },
    /// Not valid TOML, a value of the wrong type, or an unknown key.
    #[error("{path}: {message}")]
    Parse {
        /// The file (`<shaping>` for text).
        path: PathBuf,
        /// The parser's message, naming the key and its line.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("shaping: {key}: {problem}")]
    Invalid {
        /// The key, e.g. `provider.gmail.mx_suffixes` or `rule[2].factor`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ShapingError {
    pub(super) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ShapingError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Parses a rate: `"10/s"`, `"100/min"`, `"5000/h"`, `"100000/d"`, or `"N/<duration>"` such as
/// `"30/5m"`. Units: `s`/`sec`/`second`, `m`/`min`/`minute`, `h`/`hour`, `d`/`day`.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let hint = "write e.g. \"10/s\", \"5000/h\" or \"100000/d\"";
    let (count, unit) = s
        .split_once('/')
        .ok_or_else(|| format!("invalid rate {s:?}: {hint}"))?;
    let messages: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("invalid count in rate {s:?}: {hint}"))?;
    if messages == 0 {
        return Err(format!("rate {s:?} must allow at least 1"));
    }
    let unit = unit.trim();
    let per = match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        _ => humantime::parse_duration(unit)
            .map_err(|_| format!("invalid period in rate {s:?}: {hint}"))?,
    };
    if per.is_zero() {
        return Err(format!("rate {s:?} has an empty period"));
    }
    if per > HumanDuration::MAX {
        return Err(format!("rate {s:?} has a period longer than 100 years"));
    }
    Ok(Rate { messages, per })
}
