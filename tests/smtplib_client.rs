//! Python's standard `smtplib` as an independent client against the `mta` binary; every
//! message it got a `250` for is then read back from the spool and compared byte for byte.

mod common;

use std::process::Command;

use common::{Mta, tempdir, write_config};
use mta::spool::{self, QueueId};

#[test]
fn smtplib_messages_are_spooled_byte_exact() {
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        "[relay]\nlocal_domains = [\"local.test\"]\nrelay_domains = [\"*.relay.test\"]\n\
         trusted_networks = []\n[[routes]]\ndomain = \"local.test\"\nhosts = [\"127.0.0.1:9\"]\n\
         [[routes]]\ndomain = \"*.relay.test\"\nhosts = [\"127.0.0.1:9\"]\n",
    );
    let mut mta = Mta::start(dir.path(), &config);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/smtplib_client.py"
    );
    let output = Command::new("python3")
        .arg(script)
        .arg(mta.addr.ip().to_string())
        .arg(mta.addr.port().to_string())
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "smtplib client failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(mta.stop().success());

    let queue = spool::read_offline(&dir.path().join("spool")).expect("read spool");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut checked = 0;
    for line in stdout.lines() {
        let v = parse_json_line(line);
        let m = queue
            .messages
            .iter()
            .find(|m| QueueId(m.message.id).to_string() == v.id)
            .unwrap_or_else(|| panic!("message {} not in spool", v.id));
        let msg = &m.message;
        assert_eq!(msg.reverse_path, v.from);
        let rcpts: Vec<_> = msg.recipients.iter().map(|r| r.address.clone()).collect();
        assert_eq!(rcpts, v.to);
        assert!(
            msg.body.starts_with(b"Received: from "),
            "trace header first"
        );
        assert!(
            msg.body.ends_with(&v.body),
            "body of {} differs:\n{:?}\n---\n{:?}",
            v.id,
            String::from_utf8_lossy(&msg.body),
            String::from_utf8_lossy(&v.body)
        );
        let header_end = msg.body.len() - v.body.len();
        let header = String::from_utf8_lossy(&msg.body[..header_end]);
        assert!(header.contains(&format!(" id {}", v.id)), "{header}");
        checked += 1;
    }
    assert_eq!(checked, 5, "{stdout}");
}

struct Accepted {
    id: String,
    from: String,
    to: Vec<String>,
    body: Vec<u8>,
}

/// Reads the flat JSON object the script prints (string values and one string array).
fn parse_json_line(line: &str) -> Accepted {
    let field = |name: &str| -> String {
        let key = format!("\"{name}\": \"");
        let start = line
            .find(&key)
            .unwrap_or_else(|| panic!("{name} in {line}"))
            + key.len();
        let end = start + line[start..].find('"').unwrap();
        decode_json_string(&line[start..end])
    };
    let to_start = line.find("\"to\": [").unwrap() + 7;
    let to_end = to_start + line[to_start..].find(']').unwrap();
    let to = line[to_start..to_end]
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| decode_json_string(s.trim_matches('"')))
        .collect();
    Accepted {
        id: field("id"),
        from: field("from"),
        to,
        body: base64_decode(&field("body")),
    }
}

/// Decodes the `\uXXXX` escapes json.dumps uses for non-ASCII text.
fn decode_json_string(s: &str) -> String {
    let mut units = Vec::new();
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\u") {
        out.push_str(&rest[..i]);
        units.clear();
        let mut tail = &rest[i..];
        while let Some(hex) = tail.strip_prefix("\\u") {
            units.push(u16::from_str_radix(&hex[..4], 16).unwrap());
            tail = &hex[4..];
        }
        out.push_str(&String::from_utf16(&units).unwrap());
        rest = tail;
    }
    out.push_str(rest);
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
