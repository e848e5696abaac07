//! ESMTP parameters of MAIL and RCPT (RFC 5321 4.1.2 esmtp-param; SIZE RFC 1870, BODY RFC
//! 6152/3030, SMTPUTF8 RFC 6531, RET/ENVID/NOTIFY/ORCPT RFC 3461, AUTH RFC 4954, REQUIRETLS
//! RFC 8689).
//!
//! What it does: parses the space-separated `keyword[=value]` list after a path into typed
//! values, and writes them back in wire form for the client.
//!
//! What it does not do: no policy (whether SIZE is too big is the session's business).
//!
//! Invariants: keywords are case-insensitive; a keyword given twice, an unknown keyword, or a
//! malformed value is an error (the session answers `555 5.5.4`, RFC 5321 4.1.1.11).

use std::fmt::Write;

/// BODY= (RFC 6152, RFC 3030).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// 7BIT.
    SevenBit,
    /// 8BITMIME.
    EightBitMime,
    /// BINARYMIME.
    BinaryMime,
}

/// RET= (RFC 3461 4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// Return the full message.
    Full,
    /// Return the headers only.
    Headers,
}

/// NOTIFY= (RFC 3461 4.1): all false means NEVER.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Notify {
    /// SUCCESS.
    pub success: bool,
    /// FAILURE.
    pub failure: bool,
    /// DELAY.
    pub delay: bool,
}

/// MAIL parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// SIZE=.
    pub size: Option<u64>,
    /// BODY=.
    pub body: Option<Body>,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// RET=.
    pub ret: Option<Ret>,
    /// ENVID=, xtext-decoded.
    pub envid: Option<String>,
    /// AUTH=, as given.
    pub auth: Option<String>,
    /// REQUIRETLS (RFC 8689): the message may only be relayed over verified TLS.
    pub requiretls: bool,
}

/// RCPT parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// NOTIFY=.
    pub notify: Option<Notify>,
    /// ORCPT=, as given (`rfc822;a@b`, xtext-encoded).
    pub orcpt: Option<String>,
}

/// Why parameters were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    /// Not `keyword[=value]`.
    #[error("malformed parameter {0:?}")]
    Syntax(String),
    /// A keyword we do not know.
    #[error("unrecognized parameter {0}")]
    Unrecognized(String),
    /// A keyword given twice.
    #[error("duplicate parameter {0}")]
    DuplicateKeyword(String),
    /// A keyword with a bad value.
    #[error("bad value for {keyword}")]
    BadValue {
        /// The keyword.
        keyword: String,
    },
}

/// A keyword (upper-cased) and its raw value.
type Pair<'a> = (String, Option<&'a [u8]>);

fn pairs(input: &[u8]) -> Result<Vec<Pair<'_>>, ParamError> {
    let mut out: Vec<Pair<'_>> = Vec::new();
    for p in input.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        let (k, v) = match memchr::memchr(b'=', p) {
            Some(i) => (&p[..i], Some(&p[i + 1..])),
            None => (p, None),
        };
        let syntax = || ParamError::Syntax(String::from_utf8_lossy(p).into_owned());
        if k.is_empty()
            || !k[0].is_ascii_alphanumeric()
            || !k.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(syntax());
        }
        // Values are printable; octets >= 0x80 are allowed for RFC 6531 values.
        if v.is_some_and(|v| v.is_empty() || v.iter().any(|&b| b < 33 || b == 127 || b == b'=')) {
            return Err(syntax());
        }
        let key = String::from_utf8_lossy(k).to_ascii_uppercase();
        if out.iter().any(|(x, _)| *x == key) {
            return Err(ParamError::DuplicateKeyword(key));
        }
        out.push((key, v));
    }
    Ok(out)
}

fn bad(keyword: &str) -> ParamError {
    ParamError::BadValue {
        keyword: keyword.to_owned(),
    }
}

fn text(v: Option<&[u8]>, keyword: &str) -> Result<String, ParamError> {
    let v = v.ok_or_else(|| bad(keyword))?;
    String::from_utf8(v.to_vec()).map_err(|_| bad(keyword))
}

/// Parses MAIL parameters.
pub fn parse_mail_params(input: &[u8]) -> Result<MailParams, ParamError> {
    let mut p = MailParams::default();
    for (k, v) in pairs(input)? {
        match k.as_str() {
            "SIZE" => {
                let t = text(v, &k)?;
                if t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad(&k));
                }
                p.size = Some(t.parse().map_err(|_| bad(&k))?);
            }
            "BODY" => {
                p.body = Some(match text(v, &k)?.to_ascii_uppercase().as_str() {
                    "7BIT" => Body::SevenBit,
                    "8BITMIME" => Body::EightBitMime,
                    "BINARYMIME" => Body::BinaryMime,
                    _ => return Err(bad(&k)),
                })
            }
            "SMTPUTF8" => {
                if v.is_some() {
                    return Err(bad(&k));
                }
                p.smtputf8 = true;
            }
            "RET" => {
                p.ret = Some(match text(v, &k)?.to_ascii_uppercase().as_str() {
                    "FULL" => Ret::Full,
                    "HDRS" => Ret::Headers,
                    _ => return Err(bad(&k)),
                })
            }
            "ENVID" => {
                let t = text(v, &k)?;
                if t.len() > 100 {
                    return Err(bad(&k));
                }
                p.envid = Some(xtext_decode(t.as_bytes()).map_err(|_| bad(&k))?);
            }
            "AUTH" => p.auth = Some(text(v, &k)?),
            "REQUIRETLS" => {
                if v.is_some() {
                    return Err(bad(&k));
                }
                p.requiretls = true;
            }
            _ => return Err(ParamError::Unrecognized(k)),
        }
    }
    Ok(p)
}

/// Parses RCPT parameters.
pub fn parse_rcpt_params(input: &[u8]) -> Result<RcptParams, ParamError> {
    let mut p = RcptParams::default();
    for (k, v) in pairs(input)? {
        match k.as_str() {
            "NOTIFY" => {
                let t = text(v, &k)?.to_ascii_uppercase();
                let mut n = Notify::default();
                if t != "NEVER" {
                    for item in t.split(',') {
                        match item {
                            "SUCCESS" => n.success = true,
                            "FAILURE" => n.failure = true,
                            "DELAY" => n.delay = true,
                            _ => return Err(bad(&k)),
                        }
                    }
                }
                p.notify = Some(n);
            }
            "ORCPT" => {
                let t = text(v, &k)?;
                let Some((kind, addr)) = t.split_once(';') else {
                    return Err(bad(&k));
                };
                if kind.is_empty() || addr.is_empty() || t.len() > 500 {
                    return Err(bad(&k));
                }
                xtext_decode(addr.as_bytes()).map_err(|_| bad(&k))?;
                p.orcpt = Some(t);
            }
            _ => return Err(ParamError::Unrecognized(k)),
        }
    }
    Ok(p)
}

/// Decodes xtext (RFC 3461 4): `+XX` hex escapes.
pub fn xtext_decode(s: &[u8]) -> Result<String, ParamError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'+' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| bad("xtext"))?;
            let h = std::str::from_utf8(hex).map_err(|_| bad("xtext"))?;
            if !h
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
            {
                return Err(bad("xtext"));
            }
            out.push(u8::from_str_radix(h, 16).map_err(|_| bad("xtext"))?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("xtext"))
}

/// Encodes xtext (RFC 3461 4).
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            let _ = write!(out, "+{b:02X}");
        }
    }
    out
}

impl MailParams {
    /// Wire form (`SIZE=10 BODY=8BITMIME`), empty if none.
    pub fn to_wire(&self) -> String {
        let mut w = Vec::new();
        if let Some(s) = self.size {
            w.push(format!("SIZE={s}"));
        }
        if let Some(b) = self.body {
            w.push(
                match b {
                    Body::SevenBit => "BODY=7BIT",
                    Body::EightBitMime => "BODY=8BITMIME",
                    Body::BinaryMime => "BODY=BINARYMIME",
                }
                .to_owned(),
            );
        }
        if self.smtputf8 {
            w.push("SMTPUTF8".to_owned());
        }
        if let Some(r) = self.ret {
            w.push(match r {
                Ret::Full => "RET=FULL".to_owned(),
                Ret::Headers => "RET=HDRS".to_owned(),
            });
        }
        if let Some(e) = &self.envid {
            w.push(format!("ENVID={}", xtext_encode(e)));
        }
        if let Some(a) = &self.auth {
            w.push(format!("AUTH={a}"));
        }
        if self.requiretls {
            w.push("REQUIRETLS".to_owned());
        }
        w.join(" ")
    }
}

impl MailParams {
    /// Appends the DSN parameters (RFC 3461: ` RET=.. ENVID=..`, each with a leading space) in
    /// wire form: what a relaying client passes on to a next hop that offers DSN.
    pub fn write_dsn_wire(&self, out: &mut Vec<u8>) {
        match self.ret {
            Some(Ret::Full) => out.extend_from_slice(b" RET=FULL"),
            Some(Ret::Headers) => out.extend_from_slice(b" RET=HDRS"),
            None => {}
        }
        if let Some(e) = &self.envid {
            out.extend_from_slice(b" ENVID=");
            out.extend_from_slice(xtext_encode(e).as_bytes());
        }
    }
}

impl RcptParams {
    /// True when neither NOTIFY nor ORCPT was given.
    pub fn is_empty(&self) -> bool {
        self.notify.is_none() && self.orcpt.is_none()
    }

    /// Appends the parameters (` NOTIFY=.. ORCPT=..`, each with a leading space) in wire form.
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        if let Some(n) = self.notify {
            out.extend_from_slice(b" NOTIFY=");
            let mut first = true;
            for (on, word) in [
                (n.success, "SUCCESS"),
                (n.failure, "FAILURE"),
                (n.delay, "DELAY"),
            ] {
                if on {
                    if !first {
                        out.push(b',');
                    }
                    out.extend_from_slice(word.as_bytes());
                    first = false;
                }
            }
            if first {
                out.extend_from_slice(b"NEVER");
            }
        }
        if let Some(o) = &self.orcpt {
            out.extend_from_slice(b" ORCPT=");
            out.extend_from_slice(o.as_bytes());
        }
    }

    /// Wire form (`NOTIFY=FAILURE,DELAY ORCPT=rfc822;a@b`), empty if none.
    pub fn to_wire(&self) -> String {
        let mut w = Vec::new();
        if let Some(n) = self.notify {
            let mut items = Vec::new();
            if n.success {
                items.push("SUCCESS");
            }
            if n.failure {
                items.push("FAILURE");
            }
            if n.delay {
                items.push("DELAY");
            }
            if items.is_empty() {
                items.push("NEVER");
            }
            w.push(format!("NOTIFY={}", items.join(",")));
        }
        if let Some(o) = &self.orcpt {
            w.push(format!("ORCPT={o}"));
        }
        w.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail() {
        let p =
            parse_mail_params(b"size=1000 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=a+2Bb").unwrap();
        assert_eq!(p.size, Some(1000));
        assert_eq!(p.body, Some(Body::EightBitMime));
        assert!(p.smtputf8);
        assert_eq!(p.ret, Some(Ret::Headers));
        assert_eq!(p.envid.as_deref(), Some("a+b"));
        assert_eq!(
            p.to_wire(),
            "SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=a+2Bb"
        );
        assert_eq!(parse_mail_params(b"").unwrap(), MailParams::default());
        for bad in [
            &b"SIZE=x"[..],
            b"SIZE",
            b"FOO=1",
            b"SIZE=1 SIZE=2",
            b"BODY=9BIT",
            b"=x",
            b"SMTPUTF8=1",
        ] {
            assert!(
                parse_mail_params(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_mail_params(b"XFOO").unwrap_err(),
            ParamError::Unrecognized("XFOO".into())
        );
    }

    #[test]
    fn rcpt() {
        let p = parse_rcpt_params(b"NOTIFY=failure,DELAY ORCPT=rfc822;a+40b").unwrap();
        assert_eq!(
            p.notify,
            Some(Notify {
                success: false,
                failure: true,
                delay: true
            })
        );
        assert_eq!(p.to_wire(), "NOTIFY=FAILURE,DELAY ORCPT=rfc822;a+40b");
        assert_eq!(
            parse_rcpt_params(b"NOTIFY=NEVER").unwrap().notify,
            Some(Notify::default())
        );
        assert!(parse_rcpt_params(b"NOTIFY=SOMETIMES").is_err());
        assert!(parse_rcpt_params(b"ORCPT=nosemicolon").is_err());
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_encode("a b=c+"), "a+20b+3Dc+2B");
        assert_eq!(xtext_decode(b"a+20b+3Dc+2B").unwrap(), "a b=c+");
        assert!(xtext_decode(b"a+2").is_err());
    }

    #[test]
    fn extreme_sizes_are_values_or_errors_never_wraps() {
        let max = format!("SIZE={}", u64::MAX);
        assert_eq!(
            parse_mail_params(max.as_bytes()).unwrap().size,
            Some(u64::MAX)
        );
        for bad in [
            "SIZE=18446744073709551616",
            "SIZE=99999999999999999999",
            "SIZE=000000000000000000001",
            "SIZE=-1",
            "SIZE=1e9",
            "SIZE=",
        ] {
            assert!(parse_mail_params(bad.as_bytes()).is_err(), "{bad}");
        }
        let zero = parse_mail_params(b"SIZE=00000000000000000000").unwrap();
        assert_eq!(zero.size, Some(0));
    }

    #[test]
    fn requiretls_is_a_flag() {
        let p = parse_mail_params(b"requiretls").unwrap();
        assert!(p.requiretls);
        assert_eq!(p.to_wire(), "REQUIRETLS");
        assert!(matches!(
            parse_mail_params(b"REQUIRETLS=1"),
            Err(ParamError::BadValue { .. })
        ));
    }
}
