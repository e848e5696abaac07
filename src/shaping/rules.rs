//! Adaptive backoff: rules that react to a destination's replies, and the recovery afterwards.
//!
//! What it does: a [`Rule`] matches a reply (code, enhanced status pattern, text regex; all that
//! are given must match) and fires immediately or after N matches within a sliding window; its
//! action suspends the destination, multiplies its message rate or connection count by a factor,
//! or asks for its queued mail to be bounced. The [`RuleEngine`] keeps, per destination key, the
//! [`Adjustment`] in force; a reduced factor doubles back towards 1.0 every `recover_after`
//! without a matching reply.
//!
//! What it does not do: no clock reads (every call takes `now`), no enforcement (the caller
//! scales its limits with [`Adjustment::apply`], suspends in the scheduler, bounces), no I/O.
//!
//! Invariants: factors stay in `[MIN_FACTOR, 1.0]`; a window keeps at most N timestamps per rule
//! and destination; a destination with nothing in force and no pending window is pruned, so
//! memory follows the destinations in trouble, not all destinations.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use regex::Regex;
use serde::Deserialize;

use super::values::{ShapingError, parse_rate};
use crate::config::HumanDuration;
use crate::queue::{Limits, Rate};
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
    fn matches(&self, reply: &Reply, text: &mut Option<String>) -> bool {
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

/// What the caller should do now that a rule fired.
#[derive(Clone, Debug, PartialEq)]
pub enum ActionKind {
    /// Suspend the destination until then.
    Suspend {
        /// End of the suspension (the later of this and any suspension already in force).
        until: Instant,
    },
    /// Scale the destination's message rate by this factor (the new total, not a step).
    ReduceRate {
        /// Factor now in force.
        factor: f64,
    },
    /// Scale the destination's connection count by this factor (the new total).
    ReduceConnections {
        /// Factor now in force.
        factor: f64,
    },
    /// Bounce the mail queued for the destination.
    Bounce,
}

/// A fired rule and its effect.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// The rule's index in the file.
    pub rule: usize,
    /// The rule's name.
    pub name: String,
    /// What to do.
    pub kind: ActionKind,
    /// A human explanation, for logs and `explain`.
    pub explain: String,
}

/// The adjustment in force for a destination.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adjustment {
    /// Multiplier of the message rate, in `[MIN_FACTOR, 1.0]`.
    pub rate_factor: f64,
    /// Multiplier of the connection count, in `[MIN_FACTOR, 1.0]`.
    pub connection_factor: f64,
    /// Suspended until then, if still in the future.
    pub suspended_until: Option<Instant>,
}

impl Adjustment {
    /// Nothing in force.
    pub const NONE: Adjustment = Adjustment {
        rate_factor: 1.0,
        connection_factor: 1.0,
        suspended_until: None,
    };

    /// Whether nothing is in force.
    pub fn is_none(&self) -> bool {
        self.rate_factor >= 1.0 && self.connection_factor >= 1.0 && self.suspended_until.is_none()
    }

    /// `limits` scaled: connections (at least 1) and rate (at least 1 message per period; an
    /// unlimited rate stays unlimited). Suspension is the scheduler's business.
    pub fn apply(&self, limits: &Limits) -> Limits {
        let scale = |v: f64, f: f64| ((v * f).floor() as u64).max(1);
        Limits {
            max_connections: if self.connection_factor < 1.0 {
                scale(limits.max_connections as f64, self.connection_factor) as usize
            } else {
                limits.max_connections
            },
            rate: limits.rate.map(|r| {
                if self.rate_factor < 1.0 {
                    Rate {
                        messages: u32::try_from(scale(f64::from(r.messages), self.rate_factor))
                            .unwrap_or(u32::MAX),
                        per: r.per,
                    }
                } else {
                    r
                }
            }),
            ..limits.clone()
        }
    }
}

/// A factor that doubles back every `recover_after` after `since`.
#[derive(Clone, Copy, Debug)]
struct Factor {
    value: f64,
    since: Instant,
    recover_after: Duration,
    rule: usize,
}

impl Factor {
    fn at(&self, now: Instant) -> f64 {
        let steps = now.saturating_duration_since(self.since).as_nanos()
            / self.recover_after.as_nanos().max(1);
        let steps = i32::try_from(steps.min(64)).unwrap_or(64);
        (self.value * 2f64.powi(steps)).min(1.0)
    }
}

/// Per-destination state.
#[derive(Debug, Default)]
struct DestState {
    rate: Option<Factor>,
    connections: Option<Factor>,
    suspended: Option<(Instant, usize)>,
    /// Per windowed rule: recent match times (at most `count`).
    windows: HashMap<usize, VecDeque<Instant>>,
}

impl DestState {
    /// Drops what has run out by `now`; true when nothing is left.
    fn settle(&mut self, now: Instant, rules: &[Rule]) -> bool {
        for f in [&mut self.rate, &mut self.connections] {
            if f.is_some_and(|x| x.at(now) >= 1.0) {
                *f = None;
            }
        }
        if self.suspended.is_some_and(|(u, _)| u <= now) {
            self.suspended = None;
        }
        self.windows.retain(|&i, w| {
            if let Some(Rule {
                trigger: Trigger::Within { window, .. },
                ..
            }) = rules.get(i)
            {
                while w
                    .front()
                    .is_some_and(|&t| now.saturating_duration_since(t) >= *window)
                {
                    w.pop_front();
                }
            } else {
                w.clear();
            }
            !w.is_empty()
        });
        self.rate.is_none()
            && self.connections.is_none()
            && self.suspended.is_none()
            && self.windows.is_empty()
    }

    /// A match of any rule: reduced factors keep their current value and their quiet period
    /// starts again.
    fn restart_quiet(&mut self, now: Instant) {
        for f in [&mut self.rate, &mut self.connections]
            .into_iter()
            .flatten()
        {
            f.value = f.at(now);
            f.since = now;
        }
    }
}

/// The adaptive backoff state of one shard.
#[derive(Debug)]
pub struct RuleEngine {
    rules: Vec<Rule>,
    dests: HashMap<String, DestState>,
    /// Prune everything when the map grows past this (amortized).
    prune_at: usize,
}

impl RuleEngine {
    /// An engine over `rules` (in file order; the first rule that fires wins).
    pub fn new(rules: Vec<Rule>) -> Self {
        RuleEngine {
            rules,
            dests: HashMap::new(),
            prune_at: 64,
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Feeds one reply from destination `dest`. Every matching rule counts the match; the
    /// first (in file order) that fires is applied and returned. A match also restarts the
    /// quiet period of the destination's reduced factors.
    pub fn observe(&mut self, dest: &str, reply: &Reply, now: Instant) -> Option<Action> {
        let mut text = None;
        let mut matched = self
            .rules
            .iter()
            .filter(|r| r.matches(reply, &mut text))
            .peekable();
        matched.peek()?;
        let matched: Vec<usize> = matched.map(|r| r.index).collect();
        if self.dests.len() >= self.prune_at {
            self.prune(now);
            self.prune_at = (self.dests.len() * 2).max(64);
        }
        if !self.dests.contains_key(dest) {
            self.dests.insert(dest.to_owned(), DestState::default());
        }
        let state = self.dests.get_mut(dest)?;
        state.settle(now, &self.rules);
        state.restart_quiet(now);
        let mut fired = None;
        for i in matched {
            let Some(rule) = self.rules.get(i) else {
                continue;
            };
            let fires = match rule.trigger {
                Trigger::Immediately => true,
                Trigger::Within { count, window } => {
                    let w = state.windows.entry(i).or_default();
                    while w
                        .front()
                        .is_some_and(|&t| now.saturating_duration_since(t) >= window)
                    {
                        w.pop_front();
                    }
                    w.push_back(now);
                    while w.len() > count as usize {
                        w.pop_front();
                    }
                    if w.len() >= count as usize {
                        w.clear();
                        true
                    } else {
                        false
                    }
                }
            };
            if fires && fired.is_none() {
                fired = Some(rule);
            }
        }
        state.windows.retain(|_, w| !w.is_empty());
        let rule = fired?;
        let kind = match rule.action {
            RuleAction::Suspend(d) => {
                let until = now + d;
                let until = match state.suspended {
                    Some((u, _)) if u > until => u,
                    _ => {
                        state.suspended = Some((until, rule.index));
                        until
                    }
                };
                ActionKind::Suspend { until }
            }
            RuleAction::ReduceRate(f) => ActionKind::ReduceRate {
                factor: reduce(&mut state.rate, f, rule, now),
            },
            RuleAction::ReduceConnections(f) => ActionKind::ReduceConnections {
                factor: reduce(&mut state.connections, f, rule, now),
            },
            RuleAction::Bounce => ActionKind::Bounce,
        };
        let effect = match &kind {
            ActionKind::Suspend { until } => format!(
                "suspended for {}",
                humantime::format_duration(round_secs(until.saturating_duration_since(now)))
            ),
            ActionKind::ReduceRate { factor } => format!("message rate at {}", percent(*factor)),
            ActionKind::ReduceConnections { factor } => {
                format!("connections at {}", percent(*factor))
            }
            ActionKind::Bounce => "queued mail bounced".to_owned(),
        };
        if state.settle(now, &self.rules) {
            self.dests.remove(dest);
        }
        Some(Action {
            rule: rule.index,
            name: rule.name.clone(),
            explain: format!("{} fired on \"{reply}\": {effect}", rule.describe()),
            kind,
        })
    }

    /// The adjustment in force for `dest` at `now`.
    pub fn current(&self, dest: &str, now: Instant) -> Adjustment {
        let Some(s) = self.dests.get(dest) else {
            return Adjustment::NONE;
        };
        Adjustment {
            rate_factor: s.rate.map_or(1.0, |f| f.at(now)),
            connection_factor: s.connections.map_or(1.0, |f| f.at(now)),
            suspended_until: s.suspended.map(|(u, _)| u).filter(|&u| u > now),
        }
    }

    /// A human explanation of what is in force for `dest`, or `None` when nothing is.
    pub fn in_force(&self, dest: &str, now: Instant) -> Option<String> {
        let s = self.dests.get(dest)?;
        let mut parts = Vec::new();
        if let Some((until, i)) = s.suspended
            && until > now
        {
            parts.push(format!(
                "suspended for another {} by {}",
                humantime::format_duration(round_secs(until - now)),
                self.describe(i)
            ));
        }
        for (what, f) in [("message rate", s.rate), ("connections", s.connections)] {
            if let Some(f) = f {
                let v = f.at(now);
                if v < 1.0 {
                    parts.push(format!(
                        "{what} at {} by {} (doubles back every {} without a match)",
                        percent(v),
                        self.describe(f.rule),
                        humantime::format_duration(f.recover_after)
                    ));
                }
            }
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Drops destinations with nothing in force and no pending window.
    pub fn prune(&mut self, now: Instant) {
        let rules = &self.rules;
        self.dests.retain(|_, s| !s.settle(now, rules));
    }

    /// Destinations with state (for `explain` and tests).
    pub fn tracked(&self) -> usize {
        self.dests.len()
    }

    fn describe(&self, i: usize) -> String {
        self.rules
            .get(i)
            .map_or_else(|| format!("rule[{i}]"), Rule::describe)
    }
}

/// Multiplies the factor in `slot` (its current value) by `f`, floored at [`MIN_FACTOR`].
fn reduce(slot: &mut Option<Factor>, f: f64, rule: &Rule, now: Instant) -> f64 {
    let cur = slot.map_or(1.0, |x| x.at(now));
    let value = (cur * f).max(MIN_FACTOR);
    *slot = Some(Factor {
        value,
        since: now,
        recover_after: rule.recover_after,
        rule: rule.index,
    });
    value
}

fn percent(f: f64) -> String {
    format!("{:.0}%", f * 100.0)
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
