//! Fuzz body: the PROXY protocol v1/v2 header parser.
//!
//! Checks: no panic; a complete header consumes no more than given and is a prefix decision
//! (every shorter prefix of those octets is `Incomplete` or already the same header, never
//! an error); octets after the header do not change it.

use mta::proxy::{Parsed, parse};

/// Runs one input.
pub fn run(data: &[u8]) {
    // Half the inputs get the v2 signature so the fuzzer reaches the binary parser quickly.
    let mut owned = Vec::new();
    let input = match data.split_first() {
        Some((&b, rest)) if b & 1 == 1 => {
            owned.extend_from_slice(b"\r\n\r\n\0\r\nQUIT\n");
            owned.extend_from_slice(rest);
            &owned[..]
        }
        Some((_, rest)) => rest,
        None => return,
    };
    let whole = parse(input);
    if let Ok(Parsed::Header { header, consumed }) = whole {
        assert!(consumed > 0 && consumed <= input.len());
        for end in 0..consumed {
            match parse(&input[..end]) {
                Ok(Parsed::Incomplete) => {}
                other => panic!("prefix of {end} octets of a header gave {other:?}"),
            }
        }
        assert_eq!(
            parse(&input[..consumed]),
            Ok(Parsed::Header { header, consumed })
        );
    }
    if let Ok(Parsed::Incomplete) = whole {
        assert!(
            input.len() <= 16 + mta::proxy::V2_MAX_PAYLOAD,
            "incomplete past the cap"
        );
    }
}
