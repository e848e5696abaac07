use super::*;

fn report(kind: Kind) -> Report {
    Report {
        kind,
        recipients: Vec::new(),
        feedback_type: None,
        original_rcpt: None,
        original_mail_from: None,
        original_message_id: None,
        original_headers: Vec::new(),
    }
}

fn block(rcpt: &str, action: &str, status: &str) -> DsnRecipient {
    DsnRecipient {
        final_recipient: rcpt.into(),
        original_recipient: None,
        action: action.into(),
        status: status.parse().ok(),
        diagnostic: format!("smtp; 550 {status} gone"),
    }
}

fn verp(q: u64, rcpt: &str) -> VerpTarget {
    VerpTarget {
        queue_id: q,
        labels: 7,
        recipient: rcpt.into(),
    }
}

fn none(_: &str) -> Option<VerpTarget> {
    None
}

fn nothing(_: &str) -> Option<(u64, u32)> {
    None
}

#[test]
fn a_dsn_to_a_verp_address_bounces_the_token_recipient_with_its_block() {
    let mut r = report(Kind::Dsn);
    r.recipients = vec![
        block("other@x.example", "failed", "5.2.2"),
        block("Ann@X.example", "failed", "5.1.1"),
    ];
    let f = findings(&r, &[verp(9, "ann@x.example")], &none, &nothing);
    assert_eq!(f.len(), 1);
    let Finding::Bounce { target, status, .. } = &f[0] else {
        panic!("{f:?}")
    };
    assert_eq!(
        (target.queue_id, target.labels, target.how),
        (9, 7, How::Verp)
    );
    assert_eq!(status.to_string(), "5.1.1");
}

#[test]
fn delays_and_empty_reports_are_ignored_and_unknown_mail_is_unmatched() {
    let mut r = report(Kind::Dsn);
    r.recipients = vec![block("a@x", "delayed", "4.4.1")];
    assert!(matches!(
        findings(&r, &[verp(1, "a@x")], &none, &nothing)[0],
        Finding::Ignored { .. }
    ));
    let r = report(Kind::Unknown);
    assert!(matches!(
        findings(&r, &[verp(1, "a@x")], &none, &nothing)[0],
        Finding::Unmatched { .. }
    ));
}

#[test]
fn a_bounce_without_verp_is_matched_by_message_id_or_not_at_all() {
    let mut r = report(Kind::Dsn);
    r.recipients = vec![block("b@y.example", "failed", "5.1.1")];
    assert!(matches!(
        findings(&r, &[], &none, &nothing)[0],
        Finding::Unmatched { .. }
    ));
    r.original_message_id = Some("m1@sender".into());
    let lookup = |id: &str| (id == "m1@sender").then_some((42, 3));
    let f = findings(&r, &[], &none, &lookup);
    let Finding::Bounce { target, .. } = &f[0] else {
        panic!("{f:?}")
    };
    assert_eq!(
        (
            target.queue_id,
            target.labels,
            target.how,
            target.recipient.as_str()
        ),
        (42, 3, How::MessageId, "b@y.example")
    );
}

#[test]
fn a_complaint_is_matched_by_its_quoted_verp_address_before_its_message_id() {
    let mut r = report(Kind::Complaint);
    r.feedback_type = Some("abuse".into());
    r.original_mail_from = Some("<bounce+tok=c=z.example@b.example>".into());
    r.original_message_id = Some("m2@sender".into());
    r.original_rcpt = Some("c@z.example".into());
    let decode =
        |a: &str| (a == "bounce+tok=c=z.example@b.example").then(|| verp(5, "c@z.example"));
    let lookup = |_: &str| Some((6, 0));
    let f = findings(&r, &[], &decode, &lookup);
    let Finding::Complaint {
        target,
        feedback_type,
    } = &f[0]
    else {
        panic!("{f:?}")
    };
    assert_eq!((target.queue_id, target.how), (5, How::Verp));
    assert_eq!(feedback_type, "abuse");
    // Without the quoted address: the Message-ID and Original-Rcpt-To.
    r.original_mail_from = None;
    let f = findings(&r, &[], &none, &lookup);
    let Finding::Complaint { target, .. } = &f[0] else {
        panic!("{f:?}")
    };
    assert_eq!((target.queue_id, target.how), (6, How::MessageId));
    // A returned Return-Path works like Original-Mail-From.
    r.original_headers = vec![(
        RETURN_PATH.into(),
        "<bounce+tok=c=z.example@b.example>".into(),
    )];
    assert!(matches!(
        &findings(&r, &[], &decode, &nothing)[0],
        Finding::Complaint { target, .. } if target.queue_id == 5
    ));
    // Not-spam and authentication failure reports are not complaints.
    r.feedback_type = Some("not-spam".into());
    assert!(matches!(
        findings(&r, &[], &decode, &lookup)[0],
        Finding::Ignored { .. }
    ));
    // A complaint that names no recipient cannot be acted on.
    r.feedback_type = None;
    r.original_headers.clear();
    r.original_rcpt = None;
    assert!(matches!(
        findings(&r, &[], &none, &lookup)[0],
        Finding::Unmatched { .. }
    ));
}
