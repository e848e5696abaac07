use super::*;

const DSN: &str = "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
To: b+TOKEN@bounces.example.com\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"B1\"\r\n\
\r\n\
--B1\r\n\
Content-Type: text/plain\r\n\
\r\n\
I'm sorry to have to inform you that your message could not be delivered.\r\n\
--B1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.org\r\n\
Arrival-Date: Fri,  4 Dec 2026 10:00:00 +0000 (UTC)\r\n\
\r\n\
Final-Recipient: rfc822; gone@example.org\r\n\
Original-Recipient: rfc822;Gone@example.org\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected:\r\n\
\x20User unknown\r\n\
\r\n\
Final-Recipient: rfc822; ok@example.org\r\n\
Action: delivered\r\n\
Status: 2.0.0\r\n\
\r\n\
--B1\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: news@example.com\r\n\
To: gone@example.org\r\n\
Message-ID: <m1.abc@example.com>\r\n\
X-Campaign: winter-sale\r\n\
Subject: Winter sale\r\n\
\r\n\
--B1--\r\n";

const ARF: &str = "From: <abusedesk@example.net>\r\n\
Date: Thu, 8 Mar 2005 17:40:36 EDT\r\n\
Subject: FW: Earn money\r\n\
To: <fbl@example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report;\r\n\
\x20    boundary=\"part1_13d.2e68ed54_boundary\"\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: text/plain; charset=\"US-ASCII\"\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
This is an email abuse report for an email message received from IP\r\n\
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: abuse\r\n\
User-Agent: SomeGenerator/1.0\r\n\
Version: 1\r\n\
Original-Mail-From: <b+TOKEN@bounces.example.com>\r\n\
Original-Rcpt-To: <user@example.net>\r\n\
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n\
Source-IP: 192.0.2.1\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: inline\r\n\
\r\n\
From: <news@example.com>\r\n\
Received: from mailserver.example.com (mailserver.example.com [192.0.2.1])\r\n\
\x20       by example.net with SMTP; Thu, 8 Mar 2005 14:00:00 -0400\r\n\
To: <user@example.net>\r\n\
Subject: Earn money\r\n\
X-Campaign: spring\r\n\
MIME-Version: 1.0\r\n\
Content-type: text/plain\r\n\
Message-ID: <8787KJKJ3K4J3K4J3K4J3.mail@example.com>\r\n\
Date: Thu, 02 Sep 2004 12:31:03 -0500\r\n\
\r\n\
Spam Spam Spam\r\n\
--part1_13d.2e68ed54_boundary--\r\n";

#[test]
fn an_rfc3464_dsn_gives_the_failed_recipients_and_the_returned_headers() {
    let r = parse(DSN.as_bytes(), "", &["X-Campaign"]);
    assert_eq!(r.kind, Kind::Dsn);
    assert_eq!(r.recipients.len(), 1, "the delivered recipient is not kept");
    let g = &r.recipients[0];
    assert_eq!(g.final_recipient, "gone@example.org");
    assert_eq!(g.original_recipient.as_deref(), Some("Gone@example.org"));
    assert_eq!(g.action, "failed");
    assert_eq!(g.status, Some(EnhancedStatus::new(5, 1, 1)));
    assert!(g.diagnostic.starts_with("550 5.1.1"), "{}", g.diagnostic);
    assert!(g.diagnostic.ends_with("User unknown"), "{}", g.diagnostic);
    assert_eq!(r.original_message_id.as_deref(), Some("m1.abc@example.com"));
    assert_eq!(r.original_header("x-campaign"), Some("winter-sale"));
    assert_eq!(r.original_rcpt.as_deref(), Some("gone@example.org"));
}

#[test]
fn an_rfc5965_report_is_a_complaint_with_its_original_envelope() {
    let r = parse(ARF.as_bytes(), "abusedesk@example.net", &["X-Campaign"]);
    assert_eq!(r.kind, Kind::Complaint);
    assert_eq!(r.feedback_type.as_deref(), Some("abuse"));
    assert_eq!(r.original_rcpt.as_deref(), Some("user@example.net"));
    assert_eq!(
        r.original_mail_from.as_deref(),
        Some("b+TOKEN@bounces.example.com")
    );
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("8787KJKJ3K4J3K4J3K4J3.mail@example.com")
    );
    assert_eq!(r.original_header("X-Campaign"), Some("spring"));
}

#[test]
fn a_qmail_style_bounce_gives_its_status() {
    let msg = "From: MAILER-DAEMON@mail.example.org\r\nSubject: failure notice\r\n\r\n\
               Hi. This is the qmail-send program at mail.example.org.\r\n\
               I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\
               \r\n<gone@example.org>:\r\n\
               192.0.2.7 does not like recipient.\r\n\
               Remote host said: 550 5.1.1 <gone@example.org>... User unknown\r\n";
    let r = parse(msg.as_bytes(), "", &[]);
    assert_eq!(r.kind, Kind::Dsn);
    assert_eq!(r.recipients[0].status, Some(EnhancedStatus::new(5, 1, 1)));
    assert_eq!(r.recipients[0].action, "failed");
    assert!(r.recipients[0].diagnostic.contains("User unknown"));
    let plain = "Subject: Returned mail\r\n\r\n552 mailbox full\r\n";
    let r = parse(plain.as_bytes(), "", &[]);
    assert_eq!(r.recipients[0].status, Some(EnhancedStatus::new(5, 0, 0)));
}

#[test]
fn an_auto_reply_or_a_letter_is_unknown() {
    let ooo = "From: someone@example.org\r\nSubject: Out of office\r\n\r\n\
               I am away until 5.1.2027 and read mail on return. Call 555 1234.\r\n";
    assert_eq!(
        parse(ooo.as_bytes(), "someone@example.org", &[]).kind,
        Kind::Unknown
    );
    // A bounce-looking subject but no status anywhere.
    let vague = "Subject: Undeliverable\r\n\r\nIt did not work.\r\n";
    assert_eq!(parse(vague.as_bytes(), "", &[]).kind, Kind::Unknown);
}

#[test]
fn garbage_never_panics() {
    for input in [
        &b""[..],
        b"\r\n\r\n",
        b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n",
        b"Content-Type: message/feedback-report\r\n\r\n",
        &[0xff, 0xfe, b':', b'\n', b' ', 0x80][..],
    ] {
        let r = parse(input, "", &["X-Campaign"]);
        assert!(r.recipients.len() <= fields::MAX_BLOCKS);
    }
}
