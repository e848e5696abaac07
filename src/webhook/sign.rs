//! The signature of a POST: HMAC-SHA256 over `"<timestamp>.<body>"`.
//!
//! What it does: computes the value of `X-Mta-Signature` (`sha256=<lower-case hex>`) for a
//! timestamp (Unix seconds, the value of `X-Mta-Timestamp`) and a body, with the hook's secret
//! as the key (`docs/WEBHOOKS.md` shows how a receiver checks it).
//!
//! What it does not do: no clock, no transport.
//!
//! Invariants: the signed text is exactly the decimal timestamp, one `.`, and the body's
//! octets as sent.

use ring::hmac;

/// The `X-Mta-Signature` value of `body` sent at `timestamp` with `key`.
pub fn signature(key: &hmac::Key, timestamp: u64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The HMAC key of `secret`.
pub fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_value() {
        // The pieces are signed as one text; the key is RFC 4231's test case 2.
        let k = key(b"Jefe");
        let whole = hmac::sign(&k, b"1700000000.{\"events\":[]}");
        let hex: String = whole.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            signature(&k, 1_700_000_000, b"{\"events\":[]}"),
            format!("sha256={hex}")
        );
        let rfc = hmac::sign(&k, b"what do ya want for nothing?");
        let hex: String = rfc.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
