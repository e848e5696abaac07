//! Fuzz body: the DATA decoder and the BDAT chunk checker under arbitrary chunking.
//!
//! The first byte picks the policy and the size cap, the second seeds the cut points. Checks:
//! no panic; decoding in pieces gives the same body, end and flags as decoding at once; the
//! stored body never exceeds the cap; consumed octets never exceed those given.

use mta::smtp::data::{BareLineEnding, ChunkChecker, DataDecoder, DataEvent};

/// What one decode run produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    body: Vec<u8>,
    end: Option<usize>,
    too_large: bool,
    bare: bool,
    total: u64,
}

fn decode(input: &[u8], cuts: &[usize], policy: BareLineEnding, max: u64) -> Outcome {
    let mut d = DataDecoder::new(max, policy);
    let mut body = Vec::new();
    let mut start = 0;
    let mut end = None;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        match d.decode(&input[start..cut], &mut body) {
            DataEvent::NeedMore => start = cut,
            DataEvent::End { consumed } => {
                assert!(consumed <= cut - start, "consumed more than given");
                end = Some(start + consumed);
                break;
            }
        }
    }
    assert!(body.len() as u64 <= max, "stored past the cap");
    Outcome {
        too_large: d.too_large(),
        bare: d.bare_line_ending_seen(),
        total: d.total_octets(),
        body,
        end,
    }
}

fn chunks(input: &[u8], cuts: &[usize], policy: BareLineEnding) -> (Vec<u8>, bool) {
    let mut c = ChunkChecker::new(policy);
    let mut body = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        c.push(&input[start..cut], &mut body);
        start = cut;
    }
    c.finish(&mut body);
    (body, c.bare_line_ending_seen())
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let [flags, seed, input @ ..] = data else {
        return;
    };
    let policy = if flags & 1 == 0 {
        BareLineEnding::Reject
    } else {
        BareLineEnding::Normalize
    };
    let max = if flags & 2 == 0 {
        u64::MAX
    } else {
        u64::from(flags >> 2)
    };
    // Cut points from a small LCG seeded by the second byte, plus every single octet.
    let mut x = u32::from(*seed) | 1;
    let mut cuts = Vec::new();
    let mut at = 0usize;
    while at < input.len() && cuts.len() < 64 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        at += (x >> 16) as usize % 9;
        cuts.push(at);
    }
    let whole = decode(input, &[], policy, max);
    assert_eq!(decode(input, &cuts, policy, max), whole, "random cuts");
    if input.len() <= 512 {
        let every: Vec<usize> = (0..input.len()).collect();
        assert_eq!(decode(input, &every, policy, max), whole, "octet at a time");
    }
    let whole = chunks(input, &[], policy);
    assert_eq!(chunks(input, &cuts, policy), whole, "BDAT chunks");
}
