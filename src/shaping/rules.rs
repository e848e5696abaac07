//! Adaptive backoff: the engine that applies rules to a destination's replies, and the
//! recovery afterwards.
//!
//! What it does: the [`RuleEngine`] keeps, per destination key, the [`Adjustment`] in force and
//! each rule's window of matches; when a [`Rule`] (`rule.rs`) fires, its action suspends the
//! destination, multiplies its message rate or connection count by a factor, or asks for its
//! queued mail to be bounced; a reduced factor doubles back towards 1.0 every `recover_after`
//! without a matching reply.
//!
//! What it does not do: no clock reads (every call takes `now`), no enforcement (the caller
//! scales its limits with [`Adjustment::apply`], suspends in the scheduler, bounces), no I/O.
//!
//! Invariants: factors stay in `[MIN_FACTOR, 1.0]`; a window keeps at most N timestamps per rule
//! and destination; a destination with nothing in force and no pending window is pruned, so
//! memory follows the destinations in trouble, not all destinations.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub use super::rule::{EnhancedPattern, MIN_FACTOR, Rule, RuleAction, Trigger};
use crate::queue::{Limits, Rate};
use crate::smtp::Reply;

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

    /// Takes a reloaded file's rules. What a rule kept as it was (same name, matchers, action,
    /// trigger and quiet period, wherever it now stands) has in force stays: a suspension runs
    /// to its end, a reduced factor keeps recovering, its match window keeps counting. What a
    /// changed or removed rule put in force ends now. New rules start with no matches.
    pub fn reload(&mut self, rules: Vec<Rule>) {
        let map: Vec<Option<usize>> = self
            .rules
            .iter()
            .map(|old| rules.iter().position(|new| new.same_as(old)))
            .collect();
        let moved = |i: usize| map.get(i).copied().flatten();
        for s in self.dests.values_mut() {
            s.suspended = s.suspended.and_then(|(u, i)| moved(i).map(|j| (u, j)));
            for f in [&mut s.rate, &mut s.connections] {
                *f = f.and_then(|x| moved(x.rule).map(|j| Factor { rule: j, ..x }));
            }
            s.windows = std::mem::take(&mut s.windows)
                .into_iter()
                .filter_map(|(i, w)| moved(i).map(|j| (j, w)))
                .collect();
        }
        self.rules = rules;
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
