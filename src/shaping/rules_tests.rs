//! Tests of the backoff rules: matching, triggers, actions, recovery, pruning.

use std::time::{Duration, Instant};

use super::*;
use crate::queue::{Limits, Rate};
use crate::smtp::{EnhancedStatus, Reply};

const MIN: Duration = Duration::from_secs(60);

fn engine(text: &str) -> RuleEngine {
    Shaping::parse(text).unwrap().rule_engine()
}

fn reply(code: u16, st: (u8, u16, u16), text: &str) -> Reply {
    Reply::new(code, EnhancedStatus::new(st.0, st.1, st.2), text)
}

fn gmail_428() -> Reply {
    reply(
        421,
        (4, 7, 28),
        "Our system has detected an unusual rate of unsolicited mail originating from your IP address.",
    )
}

#[test]
fn immediate_reduce_rate_fires_on_first_match_and_compounds() {
    let mut e = engine(
        "[[rule]]\nname = \"g\"\nmatch_enhanced = \"4.7.28\"\naction = \"reduce_rate\"\nfactor = 0.5\n",
    );
    let t0 = Instant::now();
    let a = e.observe("mx:google", &gmail_428(), t0).expect("fires");
    assert_eq!(a.rule, 0);
    assert_eq!(a.name, "g");
    assert_eq!(a.kind, ActionKind::ReduceRate { factor: 0.5 });
    assert!(a.explain.contains("message rate at 50%"), "{}", a.explain);
    let a = e.observe("mx:google", &gmail_428(), t0 + MIN).unwrap();
    assert_eq!(a.kind, ActionKind::ReduceRate { factor: 0.25 });
    assert_eq!(e.current("mx:google", t0 + MIN).rate_factor, 0.25);
    assert_eq!(e.current("mx:other", t0), Adjustment::NONE);
    // Another reply does not match.
    assert!(
        e.observe("mx:google", &reply(450, (4, 2, 1), "busy"), t0)
            .is_none()
    );
}

#[test]
fn all_matchers_must_match() {
    let mut e = engine(
        "[[rule]]\nmatch_code = 421\nmatch_enhanced = \"4.7.*\"\nmatch_text = \"(?i)rate limit\"\naction = \"suspend\"\nduration = \"30m\"\n",
    );
    let t = Instant::now();
    assert!(
        e.observe("d", &reply(451, (4, 7, 0), "Rate limit"), t)
            .is_none()
    );
    assert!(
        e.observe("d", &reply(421, (4, 3, 0), "Rate limit"), t)
            .is_none()
    );
    assert!(
        e.observe("d", &reply(421, (4, 7, 0), "slow down"), t)
            .is_none()
    );
    let no_status = Reply::multiline(421, None, vec!["rate limit".into()]);
    assert!(e.observe("d", &no_status, t).is_none());
    let a = e
        .observe("d", &reply(421, (4, 7, 0), "You hit a RATE LIMIT"), t)
        .unwrap();
    assert_eq!(
        a.kind,
        ActionKind::Suspend {
            until: t + 30 * MIN
        }
    );
    assert_eq!(e.current("d", t).suspended_until, Some(t + 30 * MIN));
    let why = e.in_force("d", t + 10 * MIN).unwrap();
    assert!(why.contains("suspended for another 20m"), "{why}");
    assert!(why.contains("rate limit"), "{why}");
    assert_eq!(e.in_force("d", t + 30 * MIN), None);
    e.prune(t + 30 * MIN);
    assert_eq!(e.tracked(), 0);
}

#[test]
fn windowed_trigger_needs_n_matches_within_the_window() {
    let mut e = engine(
        "[[rule]]\nmatch_text = \"TSS04\"\ntrigger = \"3/h\"\naction = \"suspend\"\nduration = \"1h\"\n",
    );
    let r = reply(
        421,
        (4, 7, 0),
        "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints",
    );
    let t = Instant::now();
    assert!(e.observe("y", &r, t).is_none());
    assert!(e.observe("y", &r, t + 30 * MIN).is_none());
    // The first match has left the window: still only two within the hour.
    assert!(e.observe("y", &r, t + 61 * MIN).is_none());
    assert_eq!(e.current("y", t + 61 * MIN), Adjustment::NONE);
    // Third within an hour of the second.
    let a = e.observe("y", &r, t + 62 * MIN).expect("fires");
    assert!(matches!(a.kind, ActionKind::Suspend { .. }));
    // The window was emptied: one more match does not fire again.
    assert!(e.observe("y", &r, t + 63 * MIN).is_none());
    // Windows are per destination.
    assert!(e.observe("z", &r, t + 63 * MIN).is_none());
    // A destination whose window ran out is pruned.
    e.prune(t + 10 * 60 * MIN);
    assert_eq!(e.tracked(), 0);
}

#[test]
fn first_firing_rule_wins_but_all_count() {
    let text = r#"
[[rule]]
name = "repeated"
match_enhanced = "4.7.28"
trigger = "2/h"
action = "suspend"
duration = "30m"

[[rule]]
name = "each"
match_enhanced = "4.7.28"
action = "reduce_rate"
factor = 0.5
"#;
    let mut e = engine(text);
    let t = Instant::now();
    assert_eq!(e.observe("g", &gmail_428(), t).unwrap().name, "each");
    let a = e.observe("g", &gmail_428(), t + MIN).unwrap();
    assert_eq!(a.name, "repeated");
    let adj = e.current("g", t + MIN);
    assert_eq!(adj.rate_factor, 0.5);
    assert_eq!(adj.suspended_until, Some(t + 31 * MIN));
}

#[test]
fn factors_double_back_after_quiet_periods() {
    let mut e = engine(
        "[[rule]]\nmatch_code = 421\naction = \"reduce_connections\"\nfactor = 0.25\nrecover_after = \"10m\"\n",
    );
    let t = Instant::now();
    let busy = reply(421, (4, 3, 2), "too many connections");
    e.observe("m", &busy, t).unwrap();
    e.observe("m", &busy, t).unwrap();
    assert_eq!(e.current("m", t).connection_factor, 0.0625);
    assert_eq!(e.current("m", t + 9 * MIN).connection_factor, 0.0625);
    assert_eq!(e.current("m", t + 10 * MIN).connection_factor, 0.125);
    assert_eq!(e.current("m", t + 25 * MIN).connection_factor, 0.25);
    let why = e.in_force("m", t + 25 * MIN).unwrap();
    assert!(why.contains("connections at 25%"), "{why}");
    assert!(why.contains("every 10m"), "{why}");
    // Another match restarts the quiet period from the current value.
    let a = e.observe("m", &busy, t + 25 * MIN).unwrap();
    assert_eq!(a.kind, ActionKind::ReduceConnections { factor: 0.0625 });
    assert_eq!(e.current("m", t + 34 * MIN).connection_factor, 0.0625);
    assert_eq!(e.current("m", t + 35 * MIN).connection_factor, 0.125);
    assert_eq!(e.current("m", t + 65 * MIN).connection_factor, 1.0);
    assert_eq!(e.in_force("m", t + 65 * MIN), None);
    e.prune(t + 65 * MIN);
    assert_eq!(e.tracked(), 0);
}

#[test]
fn a_counted_match_restarts_the_quiet_period() {
    let text = r#"
[[rule]]
match_code = 421
action = "reduce_rate"
factor = 0.5
[[rule]]
match_code = 450
trigger = "100/h"
action = "bounce"
"#;
    let mut e = engine(text);
    let t = Instant::now();
    e.observe("d", &reply(421, (4, 7, 0), "slow"), t).unwrap();
    assert!(
        e.observe("d", &reply(450, (4, 2, 0), "x"), t + 9 * MIN)
            .is_none()
    );
    assert_eq!(e.current("d", t + 12 * MIN).rate_factor, 0.5);
    assert_eq!(e.current("d", t + 19 * MIN).rate_factor, 1.0);
}

#[test]
fn factors_never_go_below_the_floor() {
    let mut e = engine("[[rule]]\nmatch_code = 421\naction = \"reduce_rate\"\nfactor = 0.1\n");
    let t = Instant::now();
    for _ in 0..10 {
        e.observe("d", &reply(421, (4, 7, 0), "x"), t);
    }
    assert_eq!(e.current("d", t).rate_factor, MIN_FACTOR);
}

#[test]
fn bounce_action_keeps_no_state() {
    let mut e = engine("[[rule]]\nmatch_code = 554\naction = \"bounce\"\n");
    let t = Instant::now();
    let a = e.observe("d", &reply(554, (5, 7, 1), "denied"), t).unwrap();
    assert_eq!(a.kind, ActionKind::Bounce);
    assert_eq!(e.tracked(), 0);
    assert_eq!(e.in_force("d", t), None);
}

#[test]
fn longer_suspension_is_kept() {
    let text = r#"
[[rule]]
match_code = 421
action = "suspend"
duration = "1h"
[[rule]]
match_code = 451
action = "suspend"
duration = "5m"
"#;
    let mut e = engine(text);
    let t = Instant::now();
    e.observe("d", &reply(421, (4, 7, 0), "x"), t);
    let a = e.observe("d", &reply(451, (4, 7, 0), "x"), t).unwrap();
    assert_eq!(
        a.kind,
        ActionKind::Suspend {
            until: t + 60 * MIN
        }
    );
}

#[test]
fn adjustment_scales_limits() {
    let limits = Limits {
        max_connections: 10,
        rate: Some(Rate {
            messages: 100,
            per: Duration::from_secs(1),
        }),
        ..Limits::default()
    };
    let adj = Adjustment {
        rate_factor: 0.25,
        connection_factor: 0.05,
        suspended_until: None,
    };
    let l = adj.apply(&limits);
    assert_eq!(l.max_connections, 1);
    assert_eq!(l.rate.map(|r| r.messages), Some(25));
    assert_eq!(Adjustment::NONE.apply(&limits), limits);
    assert!(Adjustment::NONE.is_none());
    let unlimited = Limits::default();
    assert_eq!(adj.apply(&unlimited).rate, None);
}

#[test]
fn memory_stays_bounded_with_many_destinations() {
    let mut e = engine("[[rule]]\nmatch_code = 421\ntrigger = \"5/m\"\naction = \"bounce\"\n");
    let t = Instant::now();
    for i in 0..10_000u32 {
        let now = t + Duration::from_secs(u64::from(i));
        e.observe(&format!("d{i}"), &reply(421, (4, 7, 0), "x"), now);
    }
    // Only destinations with a match in the last minute (plus amortization slack) remain.
    assert!(e.tracked() < 200, "{}", e.tracked());
}

#[test]
fn rule_errors_name_the_key() {
    let bad = |text: &str, key: &str| {
        let e = Shaping::parse(text).unwrap_err().to_string();
        assert!(e.contains(key), "{key}: {e}");
    };
    bad("[[rule]]\naction = \"bounce\"\n", "rule[0]");
    bad(
        "[[rule]]\nmatch_code = 421\naction = \"bounce\"\n[[rule]]\nmatch_code = 42\naction = \"bounce\"\n",
        "rule[1].match_code",
    );
    bad(
        "[[rule]]\nmatch_enhanced = \"4.7\"\naction = \"bounce\"\n",
        "rule[0].match_enhanced",
    );
    bad(
        "[[rule]]\nmatch_text = \"(unclosed\"\naction = \"bounce\"\n",
        "rule[0].match_text",
    );
    bad(
        "[[rule]]\nmatch_code = 421\naction = \"suspend\"\n",
        "rule[0].duration",
    );
    bad(
        "[[rule]]\nmatch_code = 421\naction = \"reduce_rate\"\nfactor = 1.5\n",
        "rule[0].factor",
    );
    bad(
        "[[rule]]\nmatch_code = 421\naction = \"reduce_connections\"\n",
        "rule[0].factor",
    );
    bad(
        "[[rule]]\nmatch_code = 421\naction = \"bounce\"\nfactor = 0.5\n",
        "rule[0].factor",
    );
    bad(
        "[[rule]]\nmatch_code = 421\naction = \"bounce\"\ntrigger = \"often\"\n",
        "rule[0].trigger",
    );
    bad(
        "[[rule]]\nmatch_code = 421\naction = \"bounce\"\nrecover_after = \"0s\"\n",
        "rule[0].recover_after",
    );
    bad(
        "[[rule]]\nmatch_code = 421\naction = \"bounce\"\nmatch_txt = \"x\"\n",
        "match_txt",
    );
}

#[test]
fn triggers_and_patterns_parse() {
    let s = Shaping::parse(
        "[[rule]]\nmatch_enhanced = \"x.7.*\"\ntrigger = \"3/h\"\naction = \"bounce\"\n[[rule]]\nmatch_code = 421\ntrigger = \"immediately\"\naction = \"bounce\"\n",
    )
    .unwrap();
    let r = s.rules();
    assert_eq!(
        r[0].trigger,
        Trigger::Within {
            count: 3,
            window: Duration::from_secs(3600)
        }
    );
    assert_eq!(r[1].trigger, Trigger::Immediately);
    assert_eq!(r[1].name, "rule[1]");
    let p = EnhancedPattern::parse("x.7.*").unwrap();
    assert!(p.matches(EnhancedStatus::new(5, 7, 1)));
    assert!(p.matches(EnhancedStatus::new(4, 7, 28)));
    assert!(!p.matches(EnhancedStatus::new(4, 4, 1)));
    assert_eq!(p.to_string(), "*.7.*");
    for bad in ["3.7.1", "4.7", "4.7.1.1", "4.a.1", "4.7.1000", ""] {
        assert!(EnhancedPattern::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn a_reload_keeps_what_unchanged_rules_put_in_force_and_ends_the_rest() {
    let susp = "[[rule]]\nname = \"s\"\nmatch_enhanced = \"4.7.28\"\naction = \"suspend\"\nduration = \"1h\"\n";
    let slow = "[[rule]]\nname = \"r\"\nmatch_code = 451\naction = \"reduce_rate\"\nfactor = 0.5\n";
    let mut e = engine(&format!("{susp}{slow}"));
    let t = Instant::now();
    assert!(e.observe("a", &gmail_428(), t).is_some());
    assert!(e.observe("b", &reply(451, (4, 3, 0), "later"), t).is_some());
    // The suspension rule moves to second place, unchanged; the rate rule changes its factor.
    let changed =
        "[[rule]]\nname = \"r\"\nmatch_code = 451\naction = \"reduce_rate\"\nfactor = 0.25\n";
    let new = Shaping::parse(&format!("{changed}{susp}")).unwrap();
    e.reload(new.rule_engine().rules().to_vec());
    let now = t + MIN;
    assert!(e.current("a", now).suspended_until.is_some());
    let why = e.in_force("a", now).unwrap();
    assert!(why.contains("rule \"s\""), "{why}");
    assert_eq!(
        e.current("b", now),
        Adjustment::NONE,
        "a changed rule's effect ends"
    );
    // The new rule applies from now on.
    let a = e
        .observe("b", &reply(451, (4, 3, 0), "later"), now)
        .unwrap();
    assert_eq!(a.kind, ActionKind::ReduceRate { factor: 0.25 });
    assert_eq!(a.rule, 0);
    // Removing every rule ends everything.
    e.reload(Vec::new());
    assert_eq!(e.current("a", now), Adjustment::NONE);
    assert!(e.observe("a", &gmail_428(), now).is_none());
}
