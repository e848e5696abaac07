//! Backoff rules as written in the shaping file: what a reply must look like, when a rule
//! fires and what it asks for.
//!
//! What it does: a [`Rule`] matches a reply (code, enhanced status pattern, text regex; all that
//! are given must match) and fires immediately or after N matches within a sliding window
//! ([`Trigger`]); its [`RuleAction`] suspends, slows down or bounces. `RawRule` is the file's
//! form, validated into a [`Rule`].
//!
//! What it does not do: no state (the engine in `rules.rs` keeps it), no clock, no I/O.
//!
//! Invariants: a [`Rule`] only exists validated; factors are in `[MIN_FACTOR, 1.0)`.

use std::fmt;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::values::{ShapingError, parse_rate};
use crate::config::HumanDuration;
use crate::queue::Rate;
use crate::smtp::{EnhancedStatus, Reply};

/// The smallest factor repeated reductions reach (1/64: six doublings back to 1.0).
pub const MIN_FACTOR: f64 = 1.0 / 64.0;

/// The default quiet period after which a reduced factor doubles back.
const DEFAULT_RECOVER_AFTER: Duration = Duration::from_secs(600);

/// An enhanced status pattern: `"4.7.28"`, with `*` or `x` for any component (`"5.7.*"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnhancedPattern {
    /// Class, or any.
    pub class: Option<u8>,
    /// Subject, or any.
    pub subject: Option<u16>,
    /// Detail, or any.
    pub detail: Option<u16>,
}

impl EnhancedPattern {
    /// Parses `"4.7.28"`, `"5.7.*"`, `"x.7.x"`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.');
        let (Some(c), Some(sub), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        fn comp<T: std::str::FromStr>(p: &str, max_len: usize) -> Option<Option<T>> {
            if p == "*" || p.eq_ignore_ascii_case("x") {
                return Some(None);
            }
            if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok().map(Some)
        }
        let class = comp::<u8>(c, 1)?;
        if class.is_some_and(|c| !matches!(c, 2 | 4 | 5)) {
            return None;
        }
        Some(EnhancedPattern {
            class,
            subject: comp(sub, 3)?,
            detail: comp(d, 3)?,
        })
    }

    /// Whether `st` matches.
    pub fn matches(&self, st: EnhancedStatus) -> bool {
        self.class.is_none_or(|c| c == st.class)
            && self.subject.is_none_or(|s| s == st.subject)
            && self.detail.is_none_or(|d| d == st.detail)
    }
}

impl fmt::Display for EnhancedPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |v: Option<u16>| v.map_or_else(|| "*".to_owned(), |v| v.to_string());
        write!(
            f,
            "{}.{}.{}",
            c(self.class.map(u16::from)),
            c(self.subject),
            c(self.detail)
        )
    }
}

/// When a matching rule fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// On the first match.
    Immediately,
    /// On the `count`-th match within `window` (sliding); the window is then emptied.
    Within {
        /// Matches needed.
        count: u32,
        /// The window.
        window: Duration,
    },
}

/// What a rule does when it fires (as configured).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RuleAction {
    /// Suspend the destination for this long.
    Suspend(Duration),
    /// Multiply its message rate by this factor.
    ReduceRate(f64),
    /// Multiply its connection count by this factor.
    ReduceConnections(f64),
    /// Bounce the mail queued for it.
    Bounce,
}

/// One backoff rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its position in the file (0-based).
    pub index: usize,
    /// `name`, or `rule[<index>]`.
    pub name: String,
    /// Reply code to match.
    pub match_code: Option<u16>,
    /// Enhanced status to match.
    pub match_enhanced: Option<EnhancedPattern>,
    /// Regex on the reply text (lines joined by spaces).
    pub match_text: Option<Regex>,
    /// The action.
    pub action: RuleAction,
    /// When it fires.
    pub trigger: Trigger,
    /// Quiet period after which a reduced factor doubles back.
    pub recover_after: Duration,
}

impl Rule {
    /// Whether `reply` matches every matcher this rule has. `text` is the reply's text.
    pub(super) fn matches(&self, reply: &Reply, text: &mut Option<String>) -> bool {
        if self.match_code.is_some_and(|c| c != reply.code) {
            return false;
        }
        if let Some(p) = self.match_enhanced
            && !reply.status.is_some_and(|st| p.matches(st))
        {
            return false;
        }
        if let Some(re) = &self.match_text {
            let t = text.get_or_insert_with(|| reply.text());
            if !re.is_match(t) {
                return false;
            }
        }
        true
    }

    /// Whether `other` is the same rule, as written (its position aside): a reload that keeps
    /// a rule keeps what it has in force.
    pub fn same_as(&self, other: &Rule) -> bool {
        self.name == other.name
            && self.match_code == other.match_code
            && self.match_enhanced == other.match_enhanced
            && self.match_text.as_ref().map(Regex::as_str)
                == other.match_text.as_ref().map(Regex::as_str)
            && self.action == other.action
            && self.trigger == other.trigger
            && self.recover_after == other.recover_after
    }

    /// A human description: `"gmail-rate" (421 4.7.28 /rate limit/, 3 within 1h)`.
    pub fn describe(&self) -> String {
        let mut m = Vec::new();
        if let Some(c) = self.match_code {
            m.push(c.to_string());
        }
        if let Some(p) = self.match_enhanced {
            m.push(p.to_string());
        }
        if let Some(re) = &self.match_text {
            m.push(format!("/{}/", re.as_str()));
        }
        let trig = match self.trigger {
            Trigger::Immediately => String::new(),
            Trigger::Within { count, window } => {
                format!(", {count} within {}", humantime::format_duration(window))
            }
        };
        format!("rule {:?} ({}{trig})", self.name, m.join(" "))
    }
}

/// A rule as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    name: Option<String>,
    match_code: Option<u16>,
    match_enhanced: Option<String>,
    match_text: Option<String>,
    action: String,
    duration: Option<HumanDuration>,
    factor: Option<f64>,
    trigger: Option<String>,
    recover_after: Option<HumanDuration>,
}

impl RawRule {
    /// Validates the `index`-th rule.
    pub(super) fn build(self, index: usize) -> Result<Rule, ShapingError> {
        let key = |f: &str| format!("rule[{index}].{f}");
        if self.match_code.is_none() && self.match_enhanced.is_none() && self.match_text.is_none() {
            return Err(ShapingError::invalid(
                format!("rule[{index}]"),
                "needs at least one of match_code, match_enhanced, match_text",
            ));
        }
        if let Some(c) = self.match_code
            && !(200..600).contains(&c)
        {
            return Err(ShapingError::invalid(
                key("match_code"),
                "not an SMTP reply code",
            ));
        }
        let match_enhanced = match &self.match_enhanced {
            Some(s) => Some(EnhancedPattern::parse(s).ok_or_else(|| {
                ShapingError::invalid(
                    key("match_enhanced"),
                    format!("{s:?} is not an enhanced status (write e.g. \"4.7.28\" or \"5.7.*\")"),
                )
            })?),
            None => None,
        };
        let match_text = match &self.match_text {
            Some(s) => Some(
                Regex::new(s)
                    .map_err(|e| ShapingError::invalid(key("match_text"), e.to_string()))?,
            ),
            None => None,
        };
        let factor = |action: &str| -> Result<f64, ShapingError> {
            match self.factor {
                Some(f) if f > 0.0 && f < 1.0 => Ok(f),
                Some(_) => Err(ShapingError::invalid(
                    key("factor"),
                    "must be between 0 and 1 (exclusive)",
                )),
                None => Err(ShapingError::invalid(
                    key("factor"),
                    format!("action = \"{action}\" needs a factor (e.g. 0.5)"),
                )),
            }
        };
        let action = match self.action.as_str() {
            "suspend" => RuleAction::Suspend(match self.duration {
                Some(d) if !d.0.is_zero() => d.0,
                Some(_) => {
                    return Err(ShapingError::invalid(
                        key("duration"),
                        "must be longer than zero",
                    ));
                }
                None => {
                    return Err(ShapingError::invalid(
                        key("duration"),
                        "action = \"suspend\" needs a duration (e.g. \"30m\")",
                    ));
                }
            }),
            "reduce_rate" => RuleAction::ReduceRate(factor("reduce_rate")?),
            "reduce_connections" => RuleAction::ReduceConnections(factor("reduce_connections")?),
            "bounce" => RuleAction::Bounce,
            other => {
                return Err(ShapingError::invalid(
                    key("action"),
                    format!(
                        "{other:?}: expected suspend, reduce_rate, reduce_connections or bounce"
                    ),
                ));
            }
        };
        if self.duration.is_some() && !matches!(action, RuleAction::Suspend(_)) {
            return Err(ShapingError::invalid(
                key("duration"),
                "only action = \"suspend\" takes a duration",
            ));
        }
        if self.factor.is_some()
            && !matches!(
                action,
                RuleAction::ReduceRate(_) | RuleAction::ReduceConnections(_)
            )
        {
            return Err(ShapingError::invalid(
                key("factor"),
                "only reduce_rate and reduce_connections take a factor",
            ));
        }
        let trigger = match self.trigger.as_deref().map(str::trim) {
            None | Some("immediately") => Trigger::Immediately,
            Some(t) => {
                let Rate { messages, per } = parse_rate(t).map_err(|e| {
                    ShapingError::invalid(
                        key("trigger"),
                        format!("{e} (or \"immediately\"; \"3/h\" = the 3rd match within an hour)"),
                    )
                })?;
                if messages == 1 {
                    Trigger::Immediately
                } else {
                    Trigger::Within {
                        count: messages,
                        window: per,
                    }
                }
            }
        };
        if let Trigger::Within { count, .. } = trigger
            && count > 10_000
        {
            return Err(ShapingError::invalid(
                key("trigger"),
                "at most 10000 matches",
            ));
        }
        let recover_after = match self.recover_after {
            Some(d) if d.0.is_zero() => {
                return Err(ShapingError::invalid(
                    key("recover_after"),
                    "must be longer than zero",
                ));
            }
            Some(d) => d.0,
            None => DEFAULT_RECOVER_AFTER,
        };
        Ok(Rule {
            index,
            name: self.name.unwrap_or_else(|| format!("rule[{index}]")),
            match_code: self.match_code,
            match_enhanced,
            match_text,
            action,
            trigger,
            recover_after,
        })
    }
}
