//! Tests of the segment format: frames, headers, the record walk and decoding.

use super::*;
use crate::spool::model::{Recipient, RecipientState, Totals};

pub(crate) fn msg(id: u64, rcpts: usize, body: usize) -> MessageRecord {
    MessageRecord {
        id,
        reverse_path: "sender@example.com".into(),
        mail_params: vec![("BODY".into(), Some("8BITMIME".into()))],
        recipients: (0..rcpts)
            .map(|i| Recipient::new(format!("r{i}@example.org")))
            .collect(),
        arrival_unix_ms: 1_700_000_000_000,
        client_addr: "192.0.2.1:4242".into(),
        helo: "client.example.com".into(),
        tls: Some("TLSv1.3 TLS_AES_128_GCM_SHA256".into()),
        auth: None,
        campaign: None,
        tenant: None,
        body: (0..body).map(|i| b'a' + (i % 26) as u8).collect(),
        priority: 0,
    }
}

/// A segment with a mix of records; returns the bytes and each record's (start, unpadded
/// end, padded end).
type Spans = Vec<(usize, usize, usize)>;

fn sample() -> (Vec<u8>, Vec<Record>, Spans) {
    let mut b = encode_header(3, 7).to_vec();
    let mut recs = Vec::new();
    let mut spans = Vec::new();
    let mut push = |b: &mut Vec<u8>, kind, payload: &[u8], rec: Record| {
        let start = b.len();
        push_frame(b, kind, payload).unwrap();
        spans.push((start, start + FRAME_HEADER_LEN + payload.len(), b.len()));
        recs.push(rec);
    };
    for (i, body) in [0usize, 1, 7, 100].into_iter().enumerate() {
        let m = msg(100 + i as u64, i + 1, body);
        let off = b.len() as u64;
        push(
            &mut b,
            KIND_MESSAGE,
            &encode_message(&m).unwrap(),
            Record::Message {
                offset: off,
                id: m.id,
                recipients: m.recipients.len() as u32,
            },
        );
        let s = StateRecord {
            id: m.id,
            recipient: 0,
            state: RecipientState::Deferred {
                at_unix_ms: 5,
                next_attempt_unix_ms: 6,
                attempts: i as u32,
            },
        };
        let off = b.len() as u64;
        push(
            &mut b,
            KIND_STATE,
            &encode_state(&s).unwrap(),
            Record::State {
                offset: off,
                rec: s,
            },
        );
    }
    let r = RetireRecord {
        segments: vec![1, 2],
        totals: Totals {
            accepted: 9,
            delivered: 8,
            bounced: 1,
            expired: 0,
        },
    };
    let off = b.len() as u64;
    push(
        &mut b,
        KIND_RETIRE,
        &encode_retire(&r).unwrap(),
        Record::Retire {
            offset: off,
            rec: r,
        },
    );
    (b, recs, spans)
}

#[test]
fn framing_round_trip() {
    let (b, recs, spans) = sample();
    assert_eq!(check_header(&b, 3, 7), HeaderCheck::Valid);
    assert!(matches!(check_header(&b, 4, 7), HeaderCheck::Bad(_)));
    assert!(matches!(check_header(&b, 3, 8), HeaderCheck::Bad(_)));
    assert_eq!(check_header(&b[..31], 3, 7), HeaderCheck::Missing);
    assert_eq!(check_header(&[0u8; 64], 3, 7), HeaderCheck::Missing);
    // Every older version is still read; a newer one is refused.
    for version in OLDEST_READABLE_VERSION..=FORMAT_VERSION + 1 {
        let mut h = encode_header(3, 7);
        h[8..12].copy_from_slice(&version.to_le_bytes());
        let valid = check_header(&h, 3, 7) == HeaderCheck::Valid;
        assert_eq!(valid, version <= FORMAT_VERSION, "version {version}");
    }
    for (s, _, e) in &spans {
        assert_eq!(s % 8, 0);
        assert_eq!(e % 8, 0);
    }
    let mut it = RecordIter::new(&b);
    let got: Vec<Record> = it.by_ref().collect();
    assert_eq!(got, recs);
    assert_eq!(it.stop(), Some(Stop::Clean));
    assert_eq!(it.valid_end(), b.len() as u64);
    let Record::Message { offset, .. } = recs[6] else {
        panic!()
    };
    assert_eq!(decode_message_at(&b, offset).unwrap(), msg(103, 4, 100));
    assert!(decode_message_at(&b, offset + 8).is_err());
}

#[test]
fn cut_at_every_offset_keeps_exactly_the_whole_records() {
    let (b, recs, spans) = sample();
    for cut in HEADER_LEN..=b.len() {
        let mut it = RecordIter::new(&b[..cut]);
        let n = it.by_ref().count();
        let want = spans.iter().filter(|(_, _, e)| *e <= cut).count();
        assert_eq!(n, want, "cut at {cut}");
        assert_eq!(
            it.valid_end() as usize,
            if want == 0 {
                HEADER_LEN
            } else {
                spans[want - 1].2
            }
        );
        assert_eq!(
            RecordIter::new(&b[..cut]).collect::<Vec<_>>(),
            recs[..want].to_vec()
        );
    }
}

#[test]
fn zeros_or_garbage_after_every_offset() {
    let (b, _, spans) = sample();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for cut in HEADER_LEN..=b.len() {
        // A record survives iff its bytes are intact: the cut is after its payload (padding
        // is not checked) or what was appended happens to equal what was cut (e.g. an
        // archive ending in zero bytes, cut inside those zeros, then zero-filled).
        let intact = |v: &[u8]| {
            spans
                .iter()
                .take_while(|(s, p, _)| v.len() >= *p && v[*s..*p] == b[*s..*p])
                .count()
        };
        let mut z = b[..cut].to_vec();
        z.resize(cut + 64, 0);
        let want = intact(&z);
        assert!(want >= spans.iter().filter(|(_, p, _)| *p <= cut).count());
        assert!(want <= spans.iter().filter(|(s, _, _)| *s < cut).count() + 1);
        assert_eq!(RecordIter::new(&z).count(), want, "zeros after {cut}");
        let mut g = b[..cut].to_vec();
        for _ in 0..64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            g.push(seed as u8);
        }
        assert_eq!(
            RecordIter::new(&g).count(),
            intact(&g),
            "garbage after {cut}"
        );
    }
}

#[test]
fn any_flipped_byte_ends_the_segment_there() {
    let (b, _, spans) = sample();
    for (i, (start, end, _)) in spans.iter().enumerate() {
        for pos in *start..*end {
            let mut c = b.clone();
            c[pos] ^= 0x10;
            let mut it = RecordIter::new(&c);
            assert_eq!(it.by_ref().count(), i, "flip at {pos}");
            assert_eq!(it.valid_end() as usize, *start);
            assert_ne!(it.stop(), Some(Stop::Clean));
        }
    }
}

#[test]
fn oversized_records_are_refused() {
    let mut b = Vec::new();
    assert!(matches!(
        push_frame(&mut b, KIND_MESSAGE, &vec![0; MAX_RECORD_LEN + 1]),
        Err(SpoolError::RecordTooLarge)
    ));
    assert!(b.is_empty());
}

#[test]
fn version_4_messages_are_read_without_labels() {
    let mut m = msg(9, 2, 10);
    let old = MessageRecordV4 {
        id: m.id,
        reverse_path: m.reverse_path.clone(),
        mail_params: m.mail_params.clone(),
        recipients: m.recipients.clone(),
        arrival_unix_ms: m.arrival_unix_ms,
        client_addr: m.client_addr.clone(),
        helo: m.helo.clone(),
        tls: m.tls.clone(),
        auth: m.auth.clone(),
        body: m.body.clone(),
    };
    let payload = rkyv::to_bytes::<rancor::Error>(&old).unwrap();
    for kind in [KIND_MESSAGE_V4, KIND_MOVE_V4] {
        let mut b = Vec::new();
        push_frame(&mut b, kind, &payload).unwrap();
        assert_eq!(decode_message_at(&b, 0).unwrap(), m);
        assert_eq!(move_kind(kind), KIND_MOVE_V4);
    }
    m.campaign = Some("spring".into());
    m.tenant = Some("acme".into());
    let mut b = Vec::new();
    push_frame(&mut b, KIND_MESSAGE, &encode_message(&m).unwrap()).unwrap();
    assert_eq!(decode_message_at(&b, 0).unwrap(), m);
    assert_eq!(move_kind(KIND_MESSAGE), KIND_MOVE);
}
