//! Session tests: bytes in, replies out, no sockets.

use super::*;
use crate::config::{Config, ListenerConfig};
use crate::tls::TlsInfo;
use std::time::{Duration, UNIX_EPOCH};

struct FakeEnv {
    next: u64,
    storage: u64,
    /// Suppressed recipients, as RCPT gives them (`<...>`).
    suppressed: Vec<&'static str>,
}

impl SessionEnv for FakeEnv {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_848_098)
    }
    fn next_queue_id(&mut self) -> QueueId {
        self.next += 1;
        QueueId(self.next)
    }
    fn storage_available(&self) -> u64 {
        self.storage
    }
    fn suppressed(&self, recipient: &ForwardPath) -> Option<&'static str> {
        self.suppressed
            .contains(&recipient.to_string().as_str())
            .then_some("hard_bounce")
    }
}

/// Drives a session over a whole input, as the connection would, accepting every message.
struct Harness {
    session: Session,
    env: FakeEnv,
    queued: Vec<MessageRecord>,
    out: Vec<u8>,
    closed: bool,
    spool_fails: bool,
}

fn config(edit: impl FnOnce(&mut Config)) -> Rc<SessionConfig> {
    let mut c = Config {
        hostname: "mx.test".into(),
        ..Config::default()
    };
    c.relay.local_domains = vec!["local.test".into()];
    c.relay.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
    edit(&mut c);
    Rc::new(SessionConfig::from_config(&c))
}

impl Harness {
    fn new(client: &str) -> Self {
        Self::with(client, config(|_| {}))
    }

    fn with(client: &str, cfg: Rc<SessionConfig>) -> Self {
        let session = Session::new(cfg, client.parse().unwrap());
        let mut out = Vec::new();
        session.greeting(&mut out);
        Harness {
            session,
            env: FakeEnv {
                next: 0,
                storage: u64::MAX,
                suppressed: vec!["<gone@elsewhere.test>", "<gone@local.test>"],
            },
            queued: Vec::new(),
            out,
            closed: false,
            spool_fails: false,
        }
    }

    /// Feeds `input` in reads of `chunk` octets; returns the replies written since the last call.
    fn send_split(&mut self, input: &[u8], chunk: usize) -> String {
        let mut buf: Vec<u8> = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                if self.closed {
                    break;
                }
                let (n, action) = self.session.feed(&buf, &mut self.env, &mut self.out);
                buf.drain(..n);
                match action {
                    Action::Read => break,
                    Action::Flush => {}
                    Action::Close => self.closed = true,
                    Action::Authenticate(creds) => {
                        let outcome = if creds.password == "right" {
                            AuthOutcome::Success
                        } else {
                            AuthOutcome::Failure
                        };
                        self.session
                            .auth_result(&creds.username, outcome, &mut self.out);
                    }
                    Action::StartTls => {
                        // What the connection does: drop pipelined input, then upgrade.
                        buf.clear();
                        self.session.tls_started(TlsInfo {
                            version: "TLSv1.3".into(),
                            cipher: "TLS13_AES_128_GCM_SHA256".into(),
                        });
                        break;
                    }
                    Action::Queue(rec) => {
                        let id = QueueId(rec.id);
                        let result = if self.spool_fails { Err(()) } else { Ok(()) };
                        if result.is_ok() {
                            self.queued.push(*rec);
                        }
                        self.session.queued(id, result, &mut self.out);
                    }
                }
            }
        }
        String::from_utf8(std::mem::take(&mut self.out)).unwrap()
    }

    fn send(&mut self, input: &str) -> String {
        self.send_split(input.as_bytes(), usize::MAX)
    }
}

fn codes(replies: &str) -> Vec<&str> {
    replies
        .split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(|l| &l[..3])
        .collect()
}

const TX: &str = "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n";

#[test]
fn greeting_and_ehlo() {
    let mut h = Harness::new("192.0.2.1:1000");
    let greeting = h.send("");
    assert_eq!(greeting, "220 mx.test ESMTP ready\r\n");
    let ehlo = h.send("EHLO c.test\r\n");
    assert!(
        ehlo.starts_with("250-mx.test Hello c.test [192.0.2.1]\r\n"),
        "{ehlo}"
    );
    for kw in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(kw), "{kw} in {ehlo}");
    }
    assert!(ehlo.ends_with("250 CHUNKING\r\n"), "{ehlo}");
}

#[test]
fn a_queued_body_keeps_no_room_beyond_its_bytes() {
    // The body grows while it arrives; the queue keeps it as long as the message waits and
    // counts its length in the memory budget, so its buffer must hold no more than that.
    let mut h = Harness::new("192.0.2.1:1000");
    h.send("");
    let line = "x".repeat(70);
    let body: String = (0..70).map(|_| format!("{line}\r\n")).collect();
    let r = h.send_split(
        format!("{TX}Subject: big\r\n\r\n{body}.\r\n").as_bytes(),
        512,
    );
    assert_eq!(codes(&r), ["250", "250", "250", "354", "250"], "{r}");
    let queued = &h.queued[0].body;
    assert!(queued.len() > 5000, "{}", queued.len());
    assert_eq!(queued.capacity(), queued.len());
}

#[test]
fn pipelined_transaction_is_queued_with_envelope_and_trace() {
    let mut h = Harness::new("192.0.2.1:1000");
    h.send("");
    let r = h.send(&format!(
        "{TX}Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n"
    ));
    assert_eq!(codes(&r), ["250", "250", "250", "354", "250", "221"], "{r}");
    assert!(
        r.contains("250 2.0.0 Ok: queued as 0000000000000001\r\n"),
        "{r}"
    );
    assert!(h.closed);
    let m = &h.queued[0];
    assert_eq!(m.reverse_path, "a@b.test");
    assert_eq!(m.recipients[0].address, "u@local.test");
    assert_eq!(m.helo, "c.test");
    assert_eq!(m.client_addr, "192.0.2.1:1000");
    let body = String::from_utf8(m.body.clone()).unwrap();
    assert!(body.starts_with("Received: from c.test ([192.0.2.1])\r\n\tby mx.test with ESMTP id 0000000000000001\r\n\tfor <u@local.test>;\r\n\t"), "{body}");
    assert!(
        body.ends_with("\r\nSubject: hi\r\n\r\n.dot\r\nbody\r\n"),
        "{body}"
    );
}

#[test]
fn every_split_gives_the_same_replies_and_message() {
    let input = format!(
        "{TX}line one\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nBDAT 5\r\nab\r\ncBDAT 3 LAST\r\nxyzQUIT\r\n"
    );
    let mut reference = Harness::new("10.0.0.1:5");
    let want = reference.send(&input);
    assert_eq!(reference.queued.len(), 2, "{want}");
    assert_eq!(reference.queued[1].reverse_path, "");
    assert!(reference.queued[1].body.ends_with(b"ab\r\ncxyz"));
    for chunk in 1..input.len() {
        let mut h = Harness::new("10.0.0.1:5");
        let got = h.send_split(input.as_bytes(), chunk);
        assert_eq!(got, want, "split {chunk}");
        let bodies: Vec<_> = h.queued.iter().map(|m| m.body.clone()).collect();
        let want_bodies: Vec<_> = reference.queued.iter().map(|m| m.body.clone()).collect();
        assert_eq!(bodies, want_bodies, "split {chunk}");
    }
}

#[test]
fn sequence_errors() {
    let mut h = Harness::new("192.0.2.1:1");
    h.send("");
    assert!(h.send("MAIL FROM:<a@b.test>\r\n").starts_with("503 5.5.1"));
    h.send("EHLO c\r\n");
    assert!(
        h.send("RCPT TO:<u@local.test>\r\n")
            .starts_with("503 5.5.1")
    );
    assert!(h.send("DATA\r\n").starts_with("503 5.5.1"));
    h.send("MAIL FROM:<a@b.test>\r\n");
    assert!(h.send("MAIL FROM:<a@b.test>\r\n").starts_with("503 5.5.1"));
    assert!(h.send("DATA\r\n").starts_with("554 5.5.1"));
    assert!(h.send("RSET\r\n").starts_with("250 2.0.0"));
    assert!(h.send("FROB\r\n").starts_with("500 5.5.1"));
    assert!(h.send("MAIL FROM:a@b.test\r\n").starts_with("501"));
    assert!(h.send("NOOP\r\n").starts_with("250 2.0.0"));
    assert!(h.send("VRFY x\r\n").starts_with("252"));
}

#[test]
fn relay_policy_at_rcpt() {
    let mut h = Harness::new("192.0.2.1:1");
    h.send("EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
    assert!(
        h.send("RCPT TO:<u@elsewhere.test>\r\n")
            .starts_with("554 5.7.1")
    );
    assert!(
        h.send("RCPT TO:<u@LOCAL.test>\r\n")
            .starts_with("250 2.1.5")
    );
    assert!(h.send("RCPT TO:<Postmaster>\r\n").starts_with("250 2.1.5"));
    let mut trusted = Harness::new("10.9.9.9:1");
    trusted.send("EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
    assert!(
        trusted
            .send("RCPT TO:<u@elsewhere.test>\r\n")
            .starts_with("250 2.1.5")
    );
}

#[test]
fn suppressed_recipients_of_trusted_clients_are_refused_at_rcpt() {
    let mut trusted = Harness::new("10.9.9.9:1");
    trusted.send("EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
    let r = trusted.send("RCPT TO:<gone@elsewhere.test>\r\nRCPT TO:<ok@elsewhere.test>\r\n");
    assert_eq!(codes(&r), vec!["550", "250"], "{r}");
    assert!(r.contains(
        "5.7.1 <gone@elsewhere.test>: Recipient is on the suppression list (hard_bounce)"
    ));
    // Others are not told (delivery drops it), and in delivery mode nobody is.
    let mut other = Harness::new("192.0.2.1:1");
    other.send("EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
    assert!(
        other
            .send("RCPT TO:<gone@local.test>\r\n")
            .starts_with("250")
    );
    let cfg = config(|c| c.suppression.mode = crate::suppression::Mode::Delivery);
    let mut later = Harness::with("10.9.9.9:1", cfg);
    later.send("EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
    assert!(
        later
            .send("RCPT TO:<gone@elsewhere.test>\r\n")
            .starts_with("250")
    );
}

#[test]
fn recipient_limit() {
    let mut h = Harness::with("10.0.0.1:1", config(|c| c.smtp.max_recipients = 2));
    h.send("EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
    let r = h.send("RCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\n");
    assert_eq!(codes(&r), ["250", "250", "452"]);
    assert!(r.contains("452 4.5.3"));
}

#[test]
fn size_limits() {
    let mut h = Harness::with(
        "10.0.0.1:1",
        config(|c| c.smtp.max_message_size = config_size(2048)),
    );
    h.send("EHLO c\r\n");
    assert!(
        h.send("MAIL FROM:<a@b.test> SIZE=4096\r\n")
            .starts_with("552 5.3.4")
    );
    h.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<u@x.test>\r\nDATA\r\n");
    let big = "x".repeat(100);
    let mut data = String::new();
    for _ in 0..40 {
        data.push_str(&big);
        data.push_str("\r\n");
    }
    let r = h.send(&format!("{data}.\r\nNOOP\r\n"));
    assert_eq!(codes(&r), ["552", "250"], "{r}");
    assert!(h.queued.is_empty());
    // BDAT over the limit: the chunk is read and refused, the next chunk gets 503.
    h.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<u@x.test>\r\n");
    let r = h.send(&format!(
        "BDAT 3000\r\n{}BDAT 1 LAST\r\nxNOOP\r\n",
        "y".repeat(3000)
    ));
    assert_eq!(codes(&r), ["552", "503", "250"], "{r}");
}

fn config_size(n: u64) -> crate::config::ByteSize {
    crate::config::ByteSize(n)
}

#[test]
fn bare_line_endings_are_refused_by_default() {
    let mut h = Harness::new("10.0.0.1:1");
    let r = h.send(&format!("{TX}a\nb\r\n.\r\n"));
    assert!(
        r.ends_with(
            "550 5.6.0 Message refused: bare CR or LF in message data; lines must end with CRLF\r\n"
        ),
        "{r}"
    );
    // A smuggled "\n.\n" is neither the end of data nor a message boundary.
    let r = h.send(&format!("{TX}a\r\n\n.\nMAIL FROM:<evil@x.test>\r\n.\r\n"));
    assert_eq!(codes(&r).last(), Some(&"550"), "{r}");
    assert!(h.queued.is_empty());
    // Commands ended by a bare LF are refused too.
    assert!(h.send("NOOP\n").starts_with("500 5.5.2"));
}

#[test]
fn bare_line_endings_normalised_on_request() {
    let cfg = config(|c| c.smtp.bare_line_ending = BareLineEnding::Normalize);
    let mut h = Harness::with("10.0.0.1:1", cfg);
    let r = h.send(&format!("{TX}a\nb\rc\r\n.\r\n"));
    assert!(r.contains("250 2.0.0 Ok: queued"), "{r}");
    assert!(h.queued[0].body.ends_with(b"\r\na\r\nb\r\nc\r\n"));
}

#[test]
fn too_many_errors_closes() {
    let mut h = Harness::with("10.0.0.1:1", config(|c| c.smtp.max_errors = 3));
    let r = h.send("A\r\nB\r\nC\r\nD\r\n");
    assert_eq!(codes(&r), ["220", "500", "500", "500", "421"], "{r}");
    assert!(r.contains("421 4.7.0"));
    assert!(h.closed);
}

#[test]
fn long_line_is_refused_and_session_continues() {
    let mut h = Harness::new("10.0.0.1:1");
    h.send("");
    let r = h.send(&format!("NOOP {}\r\nNOOP\r\n", "x".repeat(600)));
    assert_eq!(codes(&r), ["500", "250"], "{r}");
    assert!(r.starts_with("500 5.5.2"));
}

#[test]
fn spool_failure_is_452() {
    let mut h = Harness::new("10.0.0.1:1");
    h.spool_fails = true;
    let r = h.send(&format!("{TX}x\r\n.\r\n"));
    assert!(
        r.ends_with("452 4.3.1 Insufficient system storage, try again later\r\n"),
        "{r}"
    );
}

#[test]
fn low_storage_refuses_mail() {
    let mut h = Harness::new("10.0.0.1:1");
    h.env.storage = 0;
    let r = h.send("EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
    assert!(
        r.ends_with("452 4.3.1 Insufficient system storage, try again later\r\n"),
        "{r}"
    );
}

#[test]
fn bdat_mixed_with_data_is_503() {
    let mut h = Harness::new("10.0.0.1:1");
    h.send("EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@x.test>\r\n");
    let r = h.send("BDAT 2\r\nabDATA\r\n");
    assert_eq!(codes(&r), ["250", "503"], "{r}");
}

#[test]
fn an_announced_bdat_size_is_not_an_allocation() {
    let mut h = Harness::new("10.0.0.1:1");
    h.send("EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@x.test>\r\n");
    // 25 MiB announced, 10 bytes sent.
    h.send("BDAT 26214400\r\n0123456789");
    let tx = h.session.tx.as_ref().expect("a transaction");
    assert!(
        tx.body.capacity() <= 128 * 1024,
        "capacity {} for 10 bytes received",
        tx.body.capacity()
    );
}

#[test]
fn bdat_without_transaction_consumes_its_chunk() {
    let mut h = Harness::new("10.0.0.1:1");
    h.send("EHLO c\r\n");
    let r = h.send("BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(codes(&r), ["503", "250"], "{r}");
    assert!(!h.closed);
}

#[test]
fn utf8_addresses_need_smtputf8() {
    let mut h = Harness::new("10.0.0.1:1");
    h.send("EHLO c\r\n");
    assert!(h.send("MAIL FROM:<jö@b.test>\r\n").starts_with("553 5.6.7"));
    assert!(
        h.send("MAIL FROM:<jö@b.test> SMTPUTF8\r\n")
            .starts_with("250")
    );
    assert!(h.send("RCPT TO:<ü@x.test>\r\n").starts_with("250"));
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"EHLO x\r\n".to_vec()),
            Just(b"MAIL FROM:<a@b.test>\r\n".to_vec()),
            Just(b"RCPT TO:<u@x.test>\r\n".to_vec()),
            Just(b"DATA\r\n".to_vec()),
            Just(b"BDAT 3\r\n".to_vec()),
            Just(b"BDAT 2 LAST\r\n".to_vec()),
            Just(b".\r\n".to_vec()),
            Just(b"\r\n.\r\n".to_vec()),
            Just(b"RSET\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\0".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ]
    }

    proptest! {
        /// Any byte sequence, in any split: no panic, every output line is a reply line, and
        /// every queued message has recipients and was produced after a 354 or a BDAT.
        #[test]
        fn arbitrary_input_gets_only_replies(parts in proptest::collection::vec(fragment(), 0..40), chunk in 1usize..64) {
            let input: Vec<u8> = parts.concat();
            let mut h = Harness::with("10.0.0.1:1", config(|c| c.smtp.max_errors = 1000));
            let out = h.send_split(&input, chunk);
            for line in out.split("\r\n").filter(|l| !l.is_empty()) {
                let b = line.as_bytes();
                prop_assert!(b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && (b[3] == b' ' || b[3] == b'-'), "{line:?}");
            }
            for m in &h.queued {
                prop_assert!(!m.recipients.is_empty());
            }
        }
    }
}

fn tls_config(mode: ListenerMode, auth_plaintext: bool) -> Rc<SessionConfig> {
    let mut c = Config {
        hostname: "mx.test".into(),
        ..Config::default()
    };
    c.relay.local_domains = vec!["local.test".into()];
    c.relay.trusted_networks = vec![];
    c.auth.users_file = Some("users".into());
    let listener = ListenerConfig {
        address: "127.0.0.1:0".parse().unwrap(),
        mode,
        auth_plaintext,
        proxy_protocol: false,
        proxy_from: None,
    };
    Rc::new(SessionConfig::for_listener(&c, &listener, true))
}

#[test]
fn starttls_is_advertised_until_tls_is_on() {
    let mut h = Harness::with("192.0.2.9:1000", tls_config(ListenerMode::Smtp, false));
    h.send("");
    let r = h.send("EHLO c.test\r\n");
    assert!(r.contains("250 STARTTLS\r\n"), "{r}");
    assert!(!r.contains("AUTH"), "AUTH is not offered before TLS: {r}");
    // The MAIL pipelined behind STARTTLS is dropped with the rest of the input.
    let r = h.send("STARTTLS\r\nMAIL FROM:<a@c.test>\r\n");
    assert_eq!(r, "220 2.0.0 Ready to start TLS\r\n");
    assert!(h.session.tls().is_some());
    let r = h.send("MAIL FROM:<a@c.test>\r\n");
    assert!(r.starts_with("503 5.5.1"), "EHLO again after TLS: {r}");
    let r = h.send("EHLO c.test\r\n");
    assert!(!r.contains("STARTTLS"), "{r}");
    assert!(r.contains("250 AUTH PLAIN LOGIN\r\n"), "{r}");
    let r = h.send("STARTTLS\r\n");
    assert!(r.starts_with("503 5.5.1"), "{r}");
}

#[test]
fn starttls_needs_ehlo_and_a_certificate() {
    let mut h = Harness::with("192.0.2.9:1000", tls_config(ListenerMode::Smtp, false));
    h.send("");
    assert!(h.send("STARTTLS\r\n").starts_with("503 5.5.1"));
    let mut h = Harness::new("192.0.2.9:1000");
    h.send("EHLO c.test\r\n");
    assert!(h.send("STARTTLS\r\n").starts_with("502 5.5.1"));
    assert!(h.send("STARTTLS extra\r\n").starts_with("501"));
}

#[test]
fn submission_requires_auth_before_mail() {
    let mut h = Harness::with(
        "192.0.2.9:1000",
        tls_config(ListenerMode::Submission, false),
    );
    h.send("EHLO c.test\r\n");
    let r = h.send("MAIL FROM:<a@c.test>\r\n");
    assert!(r.starts_with("530 5.7.0"), "{r}");
    let mut h = Harness::with("192.0.2.9:1000", tls_config(ListenerMode::Submission, true));
    let r = h.send("EHLO c.test\r\n");
    assert!(
        r.contains("AUTH PLAIN LOGIN"),
        "plaintext AUTH allowed: {r}"
    );
}

#[test]
fn auth_exchanges_inside_tls() {
    let mut h = Harness::with(
        "192.0.2.9:1000",
        tls_config(ListenerMode::Submission, false),
    );
    h.send("EHLO c.test\r\nSTARTTLS\r\n");
    h.send("EHLO c.test\r\n");
    assert!(h.send("AUTH CRAM-MD5\r\n").starts_with("504 5.5.4"));
    // PLAIN with an initial response: \0alice\0wrong, then \0alice\0right.
    assert!(
        h.send("AUTH PLAIN AGFsaWNlAHdyb25n\r\n")
            .starts_with("535 5.7.8")
    );
    assert!(h.send("AUTH PLAIN\r\n").starts_with("334 \r\n"));
    assert!(h.send("*\r\n").starts_with("501 5.0.0"));
    assert!(h.send("AUTH LOGIN\r\n").starts_with("334 VXNlcm5hbWU6"));
    assert!(h.send("!!!\r\n").starts_with("501 5.5.2"));
    assert!(
        h.send("AUTH LOGIN YWxpY2U=\r\n")
            .starts_with("334 UGFzc3dvcmQ6")
    );
    assert!(h.send("cmlnaHQ=\r\n").starts_with("235 2.7.0"));
    assert_eq!(h.session.user(), Some("alice"));
    assert!(h.send("AUTH PLAIN AGFsaWNlAHJpZ2h0\r\n").starts_with("503"));
    // Authenticated: relaying to any domain.
    let r = h.send("MAIL FROM:<a@c.test>\r\nRCPT TO:<x@elsewhere.test>\r\n");
    assert_eq!(r, "250 2.1.0 Sender ok\r\n250 2.1.5 Recipient ok\r\n");
}

#[test]
fn auth_is_refused_before_tls_and_in_a_transaction() {
    let mut h = Harness::with("192.0.2.9:1000", tls_config(ListenerMode::Smtp, false));
    h.send("EHLO c.test\r\n");
    assert!(
        h.send("AUTH PLAIN AGFsaWNlAHJpZ2h0\r\n")
            .starts_with("538 5.7.11")
    );
    let mut h = Harness::with("192.0.2.9:1000", tls_config(ListenerMode::Smtp, true));
    h.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\n");
    assert!(h.send("AUTH PLAIN AGFsaWNlAHJpZ2h0\r\n").starts_with("503"));
    let mut h = Harness::new("192.0.2.9:1000");
    h.send("EHLO c.test\r\n");
    assert!(h.send("AUTH PLAIN AGFsaWNlAHJpZ2h0\r\n").starts_with("502"));
}
