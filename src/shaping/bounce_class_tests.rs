//! Tests of bounce classification with real-world reply texts.

use super::*;
use crate::smtp::EnhancedStatus;

fn st(c: u8, s: u16, d: u16) -> Option<EnhancedStatus> {
    Some(EnhancedStatus::new(c, s, d))
}

#[test]
fn real_world_replies() {
    use BounceClass::*;
    let cases: &[(u16, Option<EnhancedStatus>, &str, BounceClass)] = &[
        (
            550,
            st(5, 1, 1),
            "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces.",
            BadMailbox,
        ),
        (
            552,
            st(5, 2, 2),
            "The email account that you tried to reach is over quota.",
            Quota,
        ),
        (
            450,
            st(4, 2, 1),
            "The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered.",
            Quota,
        ),
        (
            550,
            st(5, 7, 1),
            "Service unavailable, Client host [192.0.2.1] blocked using Spamhaus. To request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.1",
            PolicySpam,
        ),
        (
            421,
            st(4, 7, 0),
            "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
            PolicySpam,
        ),
        (
            421,
            st(4, 7, 28),
            "Our system has detected an unusual rate of unsolicited mail originating from your IP address.",
            PolicySpam,
        ),
        (
            550,
            st(5, 7, 26),
            "Unauthenticated email from example.com is not accepted due to domain's DMARC policy.",
            Policy,
        ),
        (
            550,
            st(5, 7, 1),
            "Unable to relay recipient in non-accepted domain",
            Policy,
        ),
        (
            550,
            st(5, 7, 606),
            "Access denied, banned sending IP [192.0.2.1].",
            PolicySpam,
        ),
        (
            550,
            st(5, 1, 10),
            "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
            BadDomain,
        ),
        (
            556,
            st(5, 1, 10),
            "Recipient address has null MX",
            BadDomain,
        ),
        (
            550,
            st(5, 1, 2),
            "Host unknown, domain not found",
            BadDomain,
        ),
        (
            554,
            st(5, 4, 4),
            "Unable to route: no mail hosts for domain",
            Routing,
        ),
        (451, st(4, 4, 1), "Connection timed out", Routing),
        (
            552,
            st(5, 3, 4),
            "Message size exceeds fixed maximum message size",
            Content,
        ),
        (550, st(5, 6, 0), "Message contains a virus", Content),
        (530, st(5, 7, 0), "Must issue a STARTTLS command first", Tls),
        (454, st(4, 7, 5), "Cryptographic failure", Tls),
        (523, st(5, 7, 10), "Encryption Needed", Tls),
        (
            550,
            st(5, 2, 1),
            "The email account that you tried to reach is disabled.",
            BadMailbox,
        ),
        // No enhanced status: the text decides.
        (
            554,
            None,
            "delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0]",
            BadMailbox,
        ),
        (
            550,
            None,
            "5.1.1 <x@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
            BadMailbox,
        ),
        (
            550,
            None,
            "Requested action not taken: mailbox unavailable",
            BadMailbox,
        ),
        (452, None, "Mailbox full", Quota),
        (552, None, "Requested mail action aborted", Quota),
        (
            550,
            None,
            "Rejected: listed at zen.spamhaus.org",
            PolicySpam,
        ),
        (554, None, "Transaction failed", Unknown),
        // A 2xx status says nothing about a failure.
        (250, st(2, 0, 0), "OK", Unknown),
        // x.0.0 falls back to the text.
        (550, st(5, 0, 0), "User unknown", BadMailbox),
        (554, st(5, 5, 0), "Relay access denied", Policy),
    ];
    for (code, status, text, want) in cases {
        assert_eq!(classify(*code, *status, text), *want, "{code} {text}");
    }
}

#[test]
fn configured_patterns_come_first() {
    let s = Shaping::parse(
        "[[bounce_class]]\npattern = \"(?i)doesn't have an? [a-z0-9.-]+ account\"\nclass = \"bad_mailbox\"\n[[bounce_class]]\npattern = \"(?i)mailbox (is )?full\"\nclass = \"content\"\n",
    )
    .unwrap();
    let c = s.bounce_classifier();
    assert_eq!(c.len(), 2);
    assert_eq!(
        c.classify(
            554,
            None,
            "delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0]"
        ),
        BounceClass::BadMailbox
    );
    // The pattern wins over the status (here deliberately odd, to show the order).
    assert_eq!(
        c.classify(552, st(5, 2, 2), "Mailbox is full"),
        BounceClass::Content
    );
    assert_eq!(
        c.classify(550, st(5, 1, 1), "No such user"),
        BounceClass::BadMailbox
    );
}

#[test]
fn names_are_snake_case_and_round_trip() {
    for c in BounceClass::ALL {
        assert_eq!(BounceClass::from_name(c.as_str()), Some(c));
        assert_eq!(c.to_string(), c.as_str());
        assert!(
            c.as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        );
    }
    assert_eq!(BounceClass::PolicySpam.as_str(), "policy_spam");
    assert_eq!(BounceClass::from_name("Quota"), None);
}

#[test]
fn shipped_patterns_classify_provider_texts() {
    let s = Shaping::parse(include_str!("../../config/shaping.toml")).unwrap();
    let c = s.bounce_classifier();
    assert_eq!(
        c.classify(
            554,
            None,
            "delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0]"
        ),
        BounceClass::BadMailbox
    );
    assert_eq!(
        c.classify(
            550,
            st(5, 4, 310),
            "DNS domain example.invalid does not exist [Message=InfoDomainNonexistent]"
        ),
        BounceClass::BadDomain
    );
    assert_eq!(
        c.classify(452, st(4, 2, 2), "Mailbox is full"),
        BounceClass::Quota
    );
}
