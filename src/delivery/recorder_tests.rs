//! The recorder's decisions, with no sockets: retries, expiry, DSN NOTIFY and RET, `421`
//! suspensions, reused-connection failures and shaping feedback.

use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::delivery::client::{ClientError, TransactionReplies};
use crate::delivery::message::{Facts, Message};
use crate::delivery::phase::Phase;
use crate::queue::Scheduler;
use crate::smtp::Reply;
use crate::spool::{MessageRecord, Recipient};

const HOUR: Duration = Duration::from_secs(3600);

fn policy(lifetime: Duration) -> RetryPolicy {
    RetryPolicy {
        first: Duration::from_secs(60),
        max: HOUR,
        multiplier: 2.0,
        jitter: 0.0,
        lifetime,
    }
}

/// A message from `sender` to `rcpts` (each with its NOTIFY, wire form, if any).
fn message(sender: &str, rcpts: &[(&str, Option<&str>)], trusted: bool) -> (Message, Progress) {
    let record = MessageRecord {
        id: 42,
        reverse_path: sender.into(),
        mail_params: Vec::new(),
        recipients: rcpts
            .iter()
            .map(|(a, n)| {
                let mut r = Recipient::new(*a);
                if let Some(n) = n {
                    r.params = vec![("NOTIFY".into(), Some((*n).into()))];
                }
                r
            })
            .collect(),
        arrival_unix_ms: 0,
        client_addr: "192.0.2.1:1000".into(),
        helo: "c.test".into(),
        tls: None,
        auth: None,
        campaign: None,
        tenant: None,
        body: Vec::new(),
        priority: 0,
    };
    let progress = Progress::new(&vec![None; rcpts.len()]);
    let facts = Facts {
        size: 100,
        pool: None,
        arrival: Instant::now(),
        eight_bit: false,
        trusted,
        tls_required_no: false,
        verp: false,
    };
    let q = Message::new(record, facts);
    (q, progress)
}

fn job(q: &Message, recipients: &[u32]) -> Job {
    Job {
        message: q.record.id,
        recipients: recipients.into(),
        domain: "b.test".into(),
        attempts: 0,
        arrival: q.arrival,
        priority: crate::priority::Class::Normal,
    }
}

fn reply(code: u16, text: &str) -> Reply {
    Reply::multiline(code, None, vec![text.into()])
}

fn replied(job: Job, mail: u16, rcpts: &[u16], data: Option<u16>) -> JobResult {
    JobResult {
        job,
        attempt: Attempt::Replied(TransactionReplies {
            mail: reply(mail, "mail"),
            rcpts: rcpts.iter().map(|c| reply(*c, "rcpt")).collect(),
            data: data.map(|c| reply(c, "data")),
        }),
        reuse: Reuse::Fresh,
        peer: Peer {
            host: Rc::new("mx.b.test[192.0.2.9]".to_owned()),
            tls: Rc::default(),
            auth: Rc::default(),
            ..Peer::default()
        },
        duration_ms: 5,
        next_hop_dsn: false,
    }
}

fn classify(_: EnhancedStatus, _: &str) -> BounceClass {
    BounceClass::Unknown
}

fn cx(now: Instant, retry: Option<&RetryPolicy>) -> Context<'_> {
    Context {
        now,
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        retry,
        after_421: Duration::from_secs(300),
        destination: "route:b.test",
        classify: &classify,
    }
}

fn sched() -> Scheduler {
    Scheduler::new(policy(5 * 24 * HOUR), 1)
}

fn actions(r: &Records) -> Vec<(String, DsnAction)> {
    r.dsn
        .iter()
        .flat_map(|d| &d.recipients)
        .map(|x| (x.address.clone(), x.action))
        .collect()
}

#[test]
fn delivered_recipients_are_final_and_the_message_leaves() {
    let (q, mut p) = message("s@a.test", &[("u@b.test", None), ("v@b.test", None)], true);
    let mut s = sched();
    let now = Instant::now();
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0, 1]), 250, &[250, 250], Some(250)),
        &mut s,
        &cx(now, None),
    );
    assert_eq!(r.counts.delivered, 2);
    assert!(r.finished);
    assert_eq!(p.pending, 0);
    assert!(matches!(
        r.states[..],
        [
            (
                0,
                RecipientState::Delivered {
                    at_unix_ms: 1_000_000_000
                }
            ),
            (1, _)
        ]
    ));
    assert_eq!(r.lines[0].kind, "Delivery");
    assert_eq!(r.lines[0].attempt, 1);
    assert!(r.dsn.is_none(), "no NOTIFY: no success report");
    assert!(r.feedback.is_empty() && r.suspend.is_none());
}

#[test]
fn a_deferral_is_scheduled_and_recorded_with_its_next_attempt() {
    let (q, mut p) = message("s@a.test", &[("u@b.test", None), ("v@b.test", None)], true);
    let mut s = sched();
    let now = Instant::now();
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0, 1]), 250, &[250, 451], Some(250)),
        &mut s,
        &cx(now, None),
    );
    assert_eq!((r.counts.delivered, r.counts.deferred), (1, 1));
    assert!(!r.finished);
    assert_eq!(p.pending, 1);
    assert!(!p.done[1]);
    let deferred = r.states.iter().find(|(i, _)| *i == 1).unwrap();
    let RecipientState::Deferred {
        next_attempt_unix_ms,
        attempts,
        ..
    } = deferred.1
    else {
        panic!("deferred: {deferred:?}");
    };
    assert_eq!(attempts, 1);
    assert_eq!(
        next_attempt_unix_ms,
        1_000_000_000 + 60_000,
        "first retry after 60 s"
    );
    assert_eq!(s.deferred_len(), 1, "the scheduler holds the retry");
    assert_eq!(
        s.flush_matching(now, |_, via| via.is_some_and(|k| k.0 == "route:b.test")),
        1,
        "the retry knows the queue it went through"
    );
    assert_eq!(
        p.next_attempt,
        vec![0, next_attempt_unix_ms],
        "operators see the retry"
    );
    assert_eq!(p.last[1], "451 rcpt");
    assert_eq!(r.classes, vec![BounceClass::Unknown]);
    // The retry, due and failed again, counts a second attempt.
    let due = s.poll(now + HOUR).due;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    let r = attempt(
        &q,
        &mut p,
        replied(due[0].clone(), 250, &[250], Some(250)),
        &mut s,
        &cx(now + HOUR, None),
    );
    assert_eq!(r.lines[0].attempt, 2);
    assert!(r.finished);
}

#[test]
fn a_deferral_past_the_lifetime_expires_with_a_4_4_7_bounce() {
    let (q, mut p) = message("s@a.test", &[("u@b.test", None)], true);
    let mut s = sched();
    let short = policy(Duration::from_secs(30));
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0]), 250, &[450], None),
        &mut s,
        &cx(Instant::now(), Some(&short)),
    );
    assert_eq!(r.counts.expired, 1);
    assert!(r.finished);
    assert!(matches!(
        r.states.last(),
        Some((0, RecipientState::Expired { .. }))
    ));
    assert_eq!(r.lines.last().unwrap().kind, "Expiration");
    let dsn = r.dsn.expect("a failure report");
    assert_eq!(dsn.recipients[0].status, EnhancedStatus::new(4, 4, 7));
    assert!(
        dsn.recipients[0]
            .diagnostic
            .as_ref()
            .unwrap()
            .contains("last error: 450 rcpt")
    );
    assert_eq!(s.deferred_len(), 0);
}

#[test]
fn dsn_notify_combinations() {
    let rcpts = [
        ("none@b.test", None),
        ("never@b.test", Some("NEVER")),
        ("success@b.test", Some("SUCCESS")),
        ("delay@b.test", Some("DELAY")),
        ("all@b.test", Some("SUCCESS,FAILURE,DELAY")),
    ];
    let now = Instant::now();
    // Everyone delivered, to a next hop without DSN: "relayed" for those who asked SUCCESS.
    let (q, mut p) = message("s@a.test", &rcpts, true);
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0, 1, 2, 3, 4]), 250, &[250; 5], Some(250)),
        &mut sched(),
        &cx(now, None),
    );
    assert_eq!(
        actions(&r),
        vec![
            ("success@b.test".into(), DsnAction::Relayed),
            ("all@b.test".into(), DsnAction::Relayed)
        ]
    );
    // The same to a next hop with DSN: it reports delivery itself.
    let (q, mut p) = message("s@a.test", &rcpts, true);
    let mut res = replied(job(&q, &[0, 1, 2, 3, 4]), 250, &[250; 5], Some(250));
    res.next_hop_dsn = true;
    assert!(
        attempt(&q, &mut p, res, &mut sched(), &cx(now, None))
            .dsn
            .is_none()
    );
    // Everyone bounced: failures for no NOTIFY and FAILURE, nothing for NEVER, SUCCESS or DELAY.
    let (q, mut p) = message("s@a.test", &rcpts, true);
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0, 1, 2, 3, 4]), 250, &[550; 5], None),
        &mut sched(),
        &cx(now, None),
    );
    assert_eq!(
        actions(&r),
        vec![
            ("none@b.test".into(), DsnAction::Failed),
            ("all@b.test".into(), DsnAction::Failed)
        ]
    );
    assert_eq!(
        r.dsn.as_ref().unwrap().recipients[0].remote_mta.as_deref(),
        Some("mx.b.test[192.0.2.9]")
    );
    // Everyone deferred: one "delayed" report at the first deferral, none at the second.
    let (q, mut p) = message("s@a.test", &rcpts, true);
    let mut s = sched();
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0, 1, 2, 3, 4]), 451, &[451; 5], None),
        &mut s,
        &cx(now, None),
    );
    assert_eq!(
        actions(&r),
        vec![
            ("delay@b.test".into(), DsnAction::Delayed),
            ("all@b.test".into(), DsnAction::Delayed)
        ]
    );
    let due = s.poll(now + HOUR).due;
    let r = attempt(
        &q,
        &mut p,
        replied(due[0].clone(), 451, &[451; 5], None),
        &mut s,
        &cx(now + HOUR, None),
    );
    assert!(r.dsn.is_none(), "a delay is reported once");
}

#[test]
fn no_dsn_about_null_sender_mail() {
    let (q, mut p) = message("", &[("u@b.test", Some("SUCCESS,FAILURE,DELAY"))], true);
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0]), 250, &[550], None),
        &mut sched(),
        &cx(Instant::now(), None),
    );
    assert_eq!(r.counts.bounced, 1);
    assert!(r.dsn.is_none());
}

#[test]
fn untrusted_clients_get_their_header_back_only() {
    let (q, mut p) = message("s@a.test", &[("u@b.test", None)], false);
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0]), 250, &[550], None),
        &mut sched(),
        &cx(Instant::now(), None),
    );
    assert_eq!(r.dsn.unwrap().ret, Return::Headers);
    let (q, mut p) = message("s@a.test", &[("u@b.test", None)], true);
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0]), 250, &[550], None),
        &mut sched(),
        &cx(Instant::now(), None),
    );
    assert_eq!(
        r.dsn.unwrap().ret,
        Return::Full,
        "small, trusted, no RET: whole"
    );
}

#[test]
fn a_421_suspends_the_destination_and_feeds_the_rules_once() {
    let (q, mut p) = message("s@a.test", &[("u@b.test", None), ("v@b.test", None)], true);
    let now = Instant::now();
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0, 1]), 421, &[421, 421], None),
        &mut sched(),
        &cx(now, None),
    );
    let (until, why) = r.suspend.expect("suspended");
    assert_eq!(until, now + Duration::from_secs(300));
    assert_eq!(why, "421 from mx.b.test[192.0.2.9]");
    assert_eq!(
        r.feedback.len(),
        2,
        "MAIL's reply and the RCPT reply, each once"
    );
    assert_eq!(r.counts.deferred, 2);
    // Distinct failures each go to the rules.
    let (q, mut p) = message("s@a.test", &[("u@b.test", None), ("v@b.test", None)], true);
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0, 1]), 250, &[550, 250], Some(452)),
        &mut sched(),
        &cx(now, None),
    );
    assert_eq!(
        r.feedback.iter().map(|x| x.code).collect::<Vec<_>>(),
        vec![550, 452]
    );
    assert!(r.suspend.is_none());
}

#[test]
fn a_reused_connection_lost_before_mail_gives_the_job_back() {
    let (q, mut p) = message("s@a.test", &[("u@b.test", None)], true);
    let lost = |reuse| JobResult {
        job: job(&q, &[0]),
        attempt: Attempt::Failed(ClientError::Io {
            phase: Phase::Mail,
            source: std::io::ErrorKind::ConnectionReset.into(),
        }),
        reuse,
        peer: Peer::default(),
        duration_ms: 0,
        next_hop_dsn: false,
    };
    let before = p.clone();
    let r = attempt(
        &q,
        &mut p,
        lost(Reuse::Reused),
        &mut sched(),
        &cx(Instant::now(), None),
    );
    assert_eq!(
        r.requeue.as_ref().map(|j| j.recipients.clone()),
        Some([0].as_slice().into())
    );
    assert!(r.states.is_empty() && r.lines.is_empty());
    assert_eq!(p, before, "no attempt counted");
    // The first transaction of a connection: an attempt, deferred.
    let r = attempt(
        &q,
        &mut p,
        lost(Reuse::Fresh),
        &mut sched(),
        &cx(Instant::now(), None),
    );
    assert!(r.requeue.is_none());
    assert_eq!(r.counts.deferred, 1);
    assert_eq!(p.attempts[0], 1);
}

#[test]
fn a_recipient_deleted_while_its_attempt_ran_is_not_recorded_again() {
    let (q, mut p) = message("s@a.test", &[("u@b.test", None), ("v@b.test", None)], true);
    let d = deleted(&q, &mut p, DeleteMode::Bounce, SystemTime::now());
    assert_eq!(d.counts.bounced, 2);
    assert!(d.finished);
    assert_eq!(d.lines[0].kind, "AdminAction");
    assert_eq!(actions(&d).len(), 2);
    let r = attempt(
        &q,
        &mut p,
        replied(job(&q, &[0, 1]), 250, &[250, 250], Some(250)),
        &mut sched(),
        &cx(Instant::now(), None),
    );
    assert!(r.states.is_empty() && r.lines.is_empty());
    assert_eq!(r.counts, Counts::default());
    // A silent deletion asks no DSN.
    let (q, mut p) = message("s@a.test", &[("u@b.test", None)], true);
    assert!(
        deleted(&q, &mut p, DeleteMode::Silent, SystemTime::now())
            .dsn
            .is_none()
    );
}

#[test]
fn a_decided_outcome_goes_to_every_recipient() {
    let (q, mut p) = message("s@a.test", &[("u@b.test", None), ("v@b.test", None)], true);
    let o = Outcome::bounce(
        EnhancedStatus::new(5, 4, 6),
        "mail for b.test loops back to myself",
    );
    let r = attempt(
        &q,
        &mut p,
        JobResult::decided(job(&q, &[0, 1]), o),
        &mut sched(),
        &cx(Instant::now(), None),
    );
    assert_eq!(r.counts.bounced, 2);
    assert!(
        r.dsn
            .unwrap()
            .recipients
            .iter()
            .all(|x| x.remote_mta.is_none())
    );
}

#[test]
fn requiretls_mail_returns_only_its_header() {
    let (mut q, _) = message("a@src.test", &[("u@b.test", None)], true);
    assert_eq!(returned(&q), crate::delivery::dsn::Return::Full);
    q.mail_params.requiretls = true;
    assert_eq!(returned(&q), crate::delivery::dsn::Return::Headers);
}

#[test]
fn suppressed_recipients_end_as_bounced_with_a_dsn_only_when_asked() {
    let (q, mut p) = message("s@a.test", &[("u@b.test", None), ("v@b.test", None)], true);
    let end = |dsn| End {
        kind: "Suppressed",
        reason: SUPPRESSED,
        status: EnhancedStatus::new(5, 7, 1),
        dsn,
    };
    let r = ended(
        &q,
        &mut p,
        &[(0, "hard_bounce")],
        &end(false),
        SystemTime::now(),
    );
    assert_eq!((r.counts.bounced, r.finished, p.pending), (1, false, 1));
    assert!(r.dsn.is_none());
    assert_eq!(
        (r.lines[0].kind, r.lines[0].class),
        ("Suppressed", "hard_bounce")
    );
    assert!(matches!(
        r.states[..],
        [(0, RecipientState::Bounced { .. })]
    ));
    // Already final: nothing again. The last one ends the message, with a DSN when asked.
    let r = ended(
        &q,
        &mut p,
        &[(0, "manual"), (1, "manual")],
        &end(true),
        SystemTime::now(),
    );
    assert_eq!((r.counts.bounced, r.finished), (1, true));
    assert_eq!(actions(&r).len(), 1);
}
