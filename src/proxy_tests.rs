//! Tests for the PROXY protocol parser: valid v1/v2 headers, byte-by-byte arrival,
//! malformed inputs and a property test that arbitrary bytes never panic.

use super::*;
use proptest::prelude::*;

fn sa(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn header(buf: &[u8]) -> (ProxyHeader, usize) {
    match parse(buf) {
        Ok(Parsed::Header { header, consumed }) => (header, consumed),
        other => panic!("expected a header, got {other:?}"),
    }
}

fn err(buf: &[u8]) -> ProxyError {
    match parse(buf) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Every strict prefix of `full` must ask for more bytes.
fn assert_prefixes_incomplete(full: &[u8]) {
    for n in 0..full.len() {
        assert_eq!(
            parse(&full[..n]),
            Ok(Parsed::Incomplete),
            "prefix of {n} bytes of {full:?}"
        );
    }
}

fn v2(ver_cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(family);
    let len = u16::try_from(payload.len()).expect("test payload length");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn v2_tcp4_payload() -> Vec<u8> {
    let mut p = vec![192, 0, 2, 1, 198, 51, 100, 7];
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&25u16.to_be_bytes());
    p
}

#[test]
fn v1_tcp4() {
    let buf = b"PROXY TCP4 192.0.2.1 198.51.100.7 40000 25\r\nEHLO x\r\n";
    let (h, consumed) = header(buf);
    assert_eq!(h.source, Some(sa("192.0.2.1:40000")));
    assert_eq!(h.destination, Some(sa("198.51.100.7:25")));
    assert_eq!(&buf[consumed..], b"EHLO x\r\n");
}

#[test]
fn v1_tcp6() {
    let buf = b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.9 65535 0\r\n";
    let (h, consumed) = header(buf);
    assert_eq!(h.source, Some(sa("[2001:db8::1]:65535")));
    assert_eq!(h.destination, Some(sa("[::ffff:192.0.2.9]:0")));
    assert_eq!(consumed, buf.len());
}

#[test]
fn v1_unknown() {
    for buf in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
    ] {
        let (h, consumed) = header(buf);
        assert_eq!(h.source, None);
        assert_eq!(h.destination, None);
        assert_eq!(consumed, buf.len());
    }
}

#[test]
fn v1_longest_header_is_accepted() {
    let line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(line.len(), V1_MAX_LEN - 3);
    let (_, consumed) = header(line);
    assert_eq!(consumed, line.len());
}

#[test]
fn v1_prefixes_are_incomplete() {
    assert_prefixes_incomplete(b"PROXY TCP4 192.0.2.1 198.51.100.7 40000 25\r\n");
    assert_prefixes_incomplete(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n");
    assert_prefixes_incomplete(b"PROXY UNKNOWN anything-goes here\r\n");
}

#[test]
fn v1_without_crlf_within_limit() {
    let mut buf = b"PROXY UNKNOWN ".to_vec();
    buf.resize(V1_MAX_LEN, b'a');
    assert_eq!(err(&buf), ProxyError::TooLong);
    // CR as the 107th byte leaves no room for the LF.
    let mut buf = b"PROXY UNKNOWN ".to_vec();
    buf.resize(V1_MAX_LEN - 1, b'a');
    buf.extend_from_slice(b"\r\n");
    assert_eq!(err(&buf), ProxyError::TooLong);
}

#[test]
fn v1_garbage() {
    assert_eq!(err(b"GET / HTTP/1.0\r\n"), ProxyError::NotProxy);
    assert_eq!(err(b"PROXZ"), ProxyError::NotProxy);
    assert!(matches!(err(b"PROXY UDP4 "), ProxyError::Malformed(_)));
    assert!(matches!(
        err(b"PROXY TCP4 1.2.3.4/"),
        ProxyError::Malformed(_)
    ));
    assert!(matches!(
        err(b"PROXY TCP4  1.2.3.4"),
        ProxyError::Malformed(_)
    ));
    assert!(matches!(
        err(b"PROXY TCP4 1.2.3.4\n"),
        ProxyError::Malformed(_)
    ));
    assert!(matches!(
        err(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"),
        ProxyError::Malformed(_)
    ));
    assert!(matches!(
        err(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
        ProxyError::Malformed(_)
    ));
    assert!(matches!(
        err(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
        ProxyError::Malformed(_)
    ));
    assert!(matches!(
        err(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
        ProxyError::Malformed(_)
    ));
}

#[test]
fn v1_bad_ports() {
    for port in ["65536", "+25", "-1", "025", "", "99999", "1a"] {
        let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {port} 25\r\n");
        assert!(
            matches!(err(line.as_bytes()), ProxyError::Malformed(_)),
            "port {port:?}"
        );
    }
}

#[test]
fn v1_mismatched_family() {
    assert!(matches!(
        err(b"PROXY TCP4 ::1 ::1 1 2\r\n"),
        ProxyError::Malformed(_)
    ));
    assert!(matches!(
        err(b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"),
        ProxyError::Malformed(_)
    ));
    assert!(matches!(
        err(b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"),
        ProxyError::Malformed(_)
    ));
}

#[test]
fn v2_proxy_ipv4_with_tlvs() {
    let mut payload = v2_tcp4_payload();
    // PP2_TYPE_ALPN "smtp" and an empty PP2_TYPE_NOOP.
    payload.extend_from_slice(&[0x01, 0x00, 0x04, b's', b'm', b't', b'p', 0x04, 0x00, 0x00]);
    let mut buf = v2(0x21, 0x11, &payload);
    let len = buf.len();
    buf.extend_from_slice(b"EHLO");
    let (h, consumed) = header(&buf);
    assert_eq!(consumed, len);
    assert_eq!(h.source, Some(sa("192.0.2.1:40000")));
    assert_eq!(h.destination, Some(sa("198.51.100.7:25")));
    assert_prefixes_incomplete(&buf[..len]);
}

#[test]
fn v2_proxy_ipv6() {
    let src: Ipv6Addr = "2001:db8::1".parse().expect("addr");
    let dst: Ipv6Addr = "2001:db8::2".parse().expect("addr");
    let mut payload = src.octets().to_vec();
    payload.extend_from_slice(&dst.octets());
    payload.extend_from_slice(&1234u16.to_be_bytes());
    payload.extend_from_slice(&587u16.to_be_bytes());
    payload.extend_from_slice(&[0xEE, 0x00, 0x01, 0xFF]);
    let buf = v2(0x21, 0x21, &payload);
    let (h, consumed) = header(&buf);
    assert_eq!(consumed, buf.len());
    assert_eq!(h.source, Some(sa("[2001:db8::1]:1234")));
    assert_eq!(h.destination, Some(sa("[2001:db8::2]:587")));
    assert_prefixes_incomplete(&buf);
}

#[test]
fn v2_local_and_unspec_and_unix() {
    let buf = v2(0x20, 0x00, &[]);
    assert_eq!(
        header(&buf),
        (
            ProxyHeader {
                source: None,
                destination: None
            },
            16
        )
    );
    // LOCAL ignores whatever family and payload it carries.
    let buf = v2(0x20, 0x11, &v2_tcp4_payload());
    let (h, consumed) = header(&buf);
    assert_eq!((h.source, consumed), (None, buf.len()));
    let buf = v2(0x21, 0x00, &[]);
    assert_eq!(header(&buf).0.source, None);
    // AF_UNSPEC: the payload is ignored, even when it is not a TLV list.
    let buf = v2(0x21, 0x00, &[0xAA, 0xFF, 0xFF]);
    assert_eq!(
        header(&buf),
        (
            ProxyHeader {
                source: None,
                destination: None
            },
            19
        )
    );
    let buf = v2(0x21, 0x31, &[0u8; 216]);
    assert_eq!(header(&buf).0.destination, None);
    assert_prefixes_incomplete(&v2(0x20, 0x00, &[]));
}

#[test]
fn v2_bad_signature() {
    let mut buf = v2(0x21, 0x11, &v2_tcp4_payload());
    buf[5] = b'X';
    assert_eq!(err(&buf), ProxyError::NotProxy);
    assert_eq!(err(&buf[..6]), ProxyError::NotProxy);
}

#[test]
fn v2_wrong_version_and_command() {
    let buf = v2(0x11, 0x11, &v2_tcp4_payload());
    assert_eq!(err(&buf), ProxyError::UnsupportedVersion(1));
    assert_eq!(err(&buf[..13]), ProxyError::UnsupportedVersion(1));
    let buf = v2(0x22, 0x11, &v2_tcp4_payload());
    assert_eq!(err(&buf), ProxyError::UnsupportedCommand(2));
}

#[test]
fn v2_bad_family() {
    for family in [0x12u8, 0x22, 0x32, 0x41, 0x10, 0x01] {
        let buf = v2(0x21, family, &v2_tcp4_payload());
        assert_eq!(err(&buf), ProxyError::UnsupportedFamily(family));
    }
}

#[test]
fn v2_length_problems() {
    // Declared length above the cap.
    let mut buf = v2(0x21, 0x11, &v2_tcp4_payload());
    buf[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(err(&buf[..16]), ProxyError::TooLong);
    // Too short for the family.
    let buf = v2(0x21, 0x21, &v2_tcp4_payload());
    assert!(matches!(err(&buf), ProxyError::Malformed(_)));
    // A TLV whose length runs past the declared header length.
    let mut payload = v2_tcp4_payload();
    payload.extend_from_slice(&[0x01, 0x00, 0x09, b'x']);
    assert!(matches!(
        err(&v2(0x21, 0x11, &payload)),
        ProxyError::Malformed(_)
    ));
    // A truncated TLV header.
    let mut payload = v2_tcp4_payload();
    payload.extend_from_slice(&[0x01, 0x00]);
    assert!(matches!(
        err(&v2(0x21, 0x11, &payload)),
        ProxyError::Malformed(_)
    ));
    // The largest accepted payload.
    let mut payload = v2_tcp4_payload();
    let pad = V2_MAX_PAYLOAD - payload.len() - 3;
    payload.extend_from_slice(&[0x04]);
    payload.extend_from_slice(&u16::try_from(pad).expect("pad").to_be_bytes());
    payload.resize(V2_MAX_PAYLOAD, 0);
    let buf = v2(0x21, 0x11, &payload);
    assert_eq!(header(&buf).1, 16 + V2_MAX_PAYLOAD);
}

#[test]
fn empty_and_other_first_bytes() {
    assert_eq!(parse(b""), Ok(Parsed::Incomplete));
    assert_eq!(err(b"EHLO"), ProxyError::NotProxy);
    // "\r\n" starts the v2 signature, so more bytes are needed.
    assert_eq!(parse(b"\r\n"), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"P"), Ok(Parsed::Incomplete));
}

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        if let Ok(Parsed::Header { consumed, .. }) = parse(&bytes) {
            prop_assert!(consumed <= bytes.len());
        }
    }

    #[test]
    fn never_panics_after_signature(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(Parsed::Header { consumed, .. }) = parse(&bytes) {
            prop_assert!(consumed <= bytes.len());
        }
    }

    #[test]
    fn never_panics_after_v1_prefix(tail in "[ -~\r\n]{0,120}") {
        let mut bytes = b"PROXY ".to_vec();
        bytes.extend_from_slice(tail.as_bytes());
        if let Ok(Parsed::Header { consumed, .. }) = parse(&bytes) {
            prop_assert!(consumed <= bytes.len().min(V1_MAX_LEN));
        }
    }
}
