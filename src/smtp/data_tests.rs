//! Tests of the DATA decoder, the chunk checker and dot-stuffing.

use super::*;
use proptest::prelude::*;

/// Decodes `input` fed in the given pieces; returns (body, consumed-at-end, bare, too_large).
fn decode_pieces(
    pieces: &[&[u8]],
    policy: BareLineEnding,
    max: u64,
) -> (Vec<u8>, Option<usize>, bool) {
    let mut d = DataDecoder::new(max, policy);
    let mut body = Vec::new();
    let mut offset = 0;
    for p in pieces {
        if let DataEvent::End { consumed } = d.decode(p, &mut body) {
            return (body, Some(offset + consumed), d.bare_line_ending_seen());
        }
        offset += p.len();
    }
    (body, None, d.bare_line_ending_seen())
}

fn decode(input: &[u8], policy: BareLineEnding) -> (Vec<u8>, Option<usize>, bool) {
    decode_pieces(&[input], policy, u64::MAX)
}

#[test]
fn table() {
    use BareLineEnding::*;
    /// input, policy, stored body, end offset, bare line end seen
    type Case = (
        &'static [u8],
        BareLineEnding,
        &'static [u8],
        Option<usize>,
        bool,
    );
    let cases: &[Case] = &[
        (b".\r\n", Reject, b"", Some(3), false),
        (b"a\r\n.\r\nMAIL", Reject, b"a\r\n", Some(6), false),
        (b"..x\r\n.\r\n", Reject, b".x\r\n", Some(8), false),
        (b".x\r\n.\r\n", Reject, b"x\r\n", Some(7), false),
        (b"a\n.\nb\r\n.\r\n", Reject, b"a\n.\nb\r\n", Some(10), true),
        (b"a\r.\rb\r\n.\r\n", Reject, b"a\r.\rb\r\n", Some(10), true),
        (
            b"a\n.\r\nb\r\n.\r\n",
            Reject,
            b"a\n.\r\nb\r\n",
            Some(11),
            true,
        ),
        (
            b"a\r\n.\nb\r\n.\r\n",
            Reject,
            b"a\r\n\nb\r\n",
            Some(11),
            true,
        ),
        (
            b"a\r\n.\rb\r\n.\r\n",
            Reject,
            b"a\r\n\rb\r\n",
            Some(11),
            true,
        ),
        (b"a\nb\r\n.\r\n", Normalize, b"a\r\nb\r\n", Some(8), true),
        (
            b"a\n.\r\nb\r\n.\r\n",
            Normalize,
            b"a\r\n.\r\nb\r\n",
            Some(11),
            true,
        ),
        (b"a\rb\r\n.\r\n", Normalize, b"a\r\nb\r\n", Some(8), true),
        (b"a\r\nb", Reject, b"a\r\nb", None, false),
    ];
    for (input, policy, body, end, bare) in cases {
        let got = decode(input, *policy);
        assert_eq!(
            got,
            (body.to_vec(), *end, *bare),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn size_limit_counts_but_does_not_store() {
    let input = b"0123456789\r\n.\r\n";
    let mut d = DataDecoder::new(4, BareLineEnding::Reject);
    let mut body = Vec::new();
    assert_eq!(d.decode(input, &mut body), DataEvent::End { consumed: 15 });
    assert_eq!(body, b"0123");
    assert!(d.too_large());
    assert_eq!(d.total_octets(), 12);
}

#[test]
fn every_split_and_every_pair_of_splits() {
    let input: &[u8] = b"..a\r\n\r\nb\rc\nd\r\n.x\r\n.\r\r\n.\nz\r\n.\r\nNEXT";
    for policy in [BareLineEnding::Reject, BareLineEnding::Normalize] {
        let want = decode(input, policy);
        assert!(want.1.is_some());
        for i in 0..=input.len() {
            assert_eq!(
                decode_pieces(&[&input[..i], &input[i..]], policy, u64::MAX),
                want,
                "{i}"
            );
            for j in i..=input.len() {
                let got =
                    decode_pieces(&[&input[..i], &input[i..j], &input[j..]], policy, u64::MAX);
                assert_eq!(got, want, "{i} {j}");
            }
        }
    }
}

#[test]
fn chunks() {
    for policy in [BareLineEnding::Reject, BareLineEnding::Normalize] {
        let input: &[u8] = b"a\r\nb\rc\nd\r";
        let mut whole = ChunkChecker::new(policy);
        let mut want = Vec::new();
        whole.push(input, &mut want);
        whole.finish(&mut want);
        assert!(whole.bare_line_ending_seen());
        for i in 0..=input.len() {
            let mut c = ChunkChecker::new(policy);
            let mut got = Vec::new();
            c.push(&input[..i], &mut got);
            c.push(&input[i..], &mut got);
            c.finish(&mut got);
            assert_eq!(got, want, "{i}");
        }
    }
    let mut c = ChunkChecker::new(BareLineEnding::Reject);
    let mut body = Vec::new();
    c.push(b"a\r", &mut body);
    c.push(b"\nb\r\n", &mut body);
    c.finish(&mut body);
    assert!(!c.bare_line_ending_seen());
    assert_eq!(body, b"a\r\nb\r\n");
}

#[test]
fn stuffing() {
    let mut out = Vec::new();
    dot_stuff(b".a\r\n.\r\nb\r\n", &mut out);
    assert_eq!(out, b"..a\r\n..\r\nb\r\n.\r\n");
    out.clear();
    dot_stuff(b"", &mut out);
    assert_eq!(out, b".\r\n");
    out.clear();
    dot_stuff(b"no newline", &mut out);
    assert_eq!(out, b"no newline\r\n.\r\n");
}

fn crlf_body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b".".to_vec()),
            Just(b"..".to_vec()),
            Just(b"x".to_vec()),
            Just(b"hello".to_vec())
        ],
        0..40,
    )
    .prop_map(|parts| {
        let mut b: Vec<u8> = parts.concat();
        if !b.is_empty() && !b.ends_with(b"\r\n") {
            b.extend_from_slice(b"\r\n");
        }
        b
    })
}

proptest! {
    #[test]
    fn stuff_then_decode_round_trips(body in crlf_body(), split in 0usize..2000) {
        let mut wire = Vec::new();
        dot_stuff(&body, &mut wire);
        let s = split.min(wire.len());
        let (got, end, bare) = decode_pieces(&[&wire[..s], &wire[s..]], BareLineEnding::Reject, u64::MAX);
        prop_assert_eq!(got, body);
        prop_assert_eq!(end, Some(wire.len()));
        prop_assert!(!bare);
    }

    #[test]
    fn random_input_any_split_same_result(
        input in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a')], 0..64),
        a in 0usize..64, b in 0usize..64,
    ) {
        for policy in [BareLineEnding::Reject, BareLineEnding::Normalize] {
            let want = decode(&input, policy);
            let (a, b) = (a.min(input.len()), b.min(input.len()));
            let (a, b) = (a.min(b), a.max(b));
            let got = decode_pieces(&[&input[..a], &input[a..b], &input[b..]], policy, u64::MAX);
            prop_assert_eq!(got, want);
        }
    }
}

/// Decodes `input` in `pieces` with the state machine alone (the reference for the fast path).
fn reference(
    input: &[u8],
    cuts: &[usize],
    policy: BareLineEnding,
    max: u64,
) -> (Vec<u8>, Option<usize>, bool, u64) {
    run(DataDecoder::state_machine_only(max, policy), input, cuts)
}

fn fast(
    input: &[u8],
    cuts: &[usize],
    policy: BareLineEnding,
    max: u64,
) -> (Vec<u8>, Option<usize>, bool, u64) {
    run(DataDecoder::new(max, policy), input, cuts)
}

fn run(mut d: DataDecoder, input: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<usize>, bool, u64) {
    let mut body = Vec::new();
    let mut at = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    for end in bounds {
        if let DataEvent::End { consumed } = d.decode(&input[at..end], &mut body) {
            return (
                body,
                Some(at + consumed),
                d.bare_line_ending_seen(),
                d.total_octets(),
            );
        }
        at = end;
    }
    (body, None, d.bare_line_ending_seen(), d.total_octets())
}

/// Long lines of text with, now and then, a dot line start, a bare CR or LF, or the end.
fn long_input() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            20 => Just(&b"The quick brown fox jumps over the lazy dog\r\n"[..]),
            4 => Just(&b"..stuffed\r\n"[..]),
            1 => Just(&b"bare\nLF"[..]),
            1 => Just(&b"bare\rCR"[..]),
            1 => Just(&b"\r\n.\r\n"[..]),
            1 => Just(&b"\n.\n"[..]),
            1 => Just(&[b'x'; 40_000][..]),
        ],
        0..200,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn fast_spans_equal_the_state_machine(
        input in long_input(),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
        max in prop_oneof![Just(u64::MAX), 0u64..100_000],
    ) {
        for policy in [BareLineEnding::Reject, BareLineEnding::Normalize] {
            prop_assert_eq!(fast(&input, &cuts, policy, max), reference(&input, &cuts, policy, max));
        }
    }

    #[test]
    fn fast_spans_equal_the_state_machine_on_small_alphabets(
        input in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a')], 0..200),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        for policy in [BareLineEnding::Reject, BareLineEnding::Normalize] {
            prop_assert_eq!(fast(&input, &cuts, policy, u64::MAX), reference(&input, &cuts, policy, u64::MAX));
        }
    }
}
