//! What a shared list keeps in Redis, and the script that publishes a batch of changes.
//!
//! What it does: names the keys (`<prefix>suppression`, a stream of changes,
//! `<prefix>suppression:state`, a hash of each address's latest change, removals included, and
//! `<prefix>suppression:nodes`, the nodes whose changes it has);
//! encodes a change as `<at> <node> <record>` (the unix time, the node that made it, and the
//! log record of `record.rs`, checksummed) and decodes one; reads stream ids and the replies
//! of `XREAD` and `HSCAN`. [`PUBLISH`] is the script: per change, if the hash holds a newer
//! one for that address it answers with it, else it stores the change in the hash and appends
//! it to the stream (trimmed to about [`STREAM_LEN`] changes), atomically.
//!
//! What it does not do: no connections (the publisher and subscriber call Redis).
//!
//! Invariants: a value that does not decode (wrong shape, bad checksum) is ignored, never a
//! panic; for one address the stream's changes come in the order of their times (the script
//! never appends a change older than the one the hash holds), so applying the stream in
//! order leaves every node with the latest change.

use redis::Value;

use crate::suppression::record::{self, Decoded, Entry};

/// About how many changes the stream keeps (`XADD MAXLEN ~`): a node that falls further
/// behind reads the hash again.
pub const STREAM_LEN: u64 = 100_000;

/// The script: `KEYS[1]` the stream, `KEYS[2]` the hash; `ARGV[1]` the stream's bound, then
/// per change its field, time and value. The answer has one string per change: empty when
/// the change was published, else the newer value the hash holds.
pub const PUBLISH: &str = r"
local out = {}
for i = 2, #ARGV, 3 do
  local field, at, value = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local held = redis.call('HGET', KEYS[2], field)
  local held_at = held and tonumber(string.match(held, '^(%d+) '))
  if held_at and held_at > at then
    out[#out + 1] = held
  else
    redis.call('HSET', KEYS[2], field, value)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', value)
    out[#out + 1] = ''
  end
end
return out
";

/// The keys of a shared list.
#[derive(Clone, Debug)]
pub struct Keys {
    /// The stream of changes.
    pub stream: String,
    /// The hash of each address's latest change.
    pub state: String,
    /// The hash of the nodes whose changes Redis has (node → when it was first recorded).
    pub nodes: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            stream: format!("{prefix}suppression"),
            state: format!("{prefix}suppression:state"),
            nodes: format!("{prefix}suppression:nodes"),
        }
    }
}

/// The hash field of an entry: its tenant (no blanks) and address.
pub fn field(e: &Entry) -> String {
    format!("{} {}", e.tenant, e.address)
}

/// The value of a change `e` that node `node` made.
pub fn value(e: &Entry, node: &str) -> Vec<u8> {
    let mut out = format!("{} {node} ", e.at).into_bytes();
    record::encode(e, &mut out);
    out
}

/// The node and the change of a value.
pub fn decode(v: &[u8]) -> Option<(String, Entry)> {
    let space = |from: usize| v[from..].iter().position(|&b| b == b' ').map(|i| from + i);
    let a = space(0)?;
    let n = space(a + 1)?;
    let node = std::str::from_utf8(&v[a + 1..n]).ok()?.to_owned();
    match record::decode(&v[n + 1..]) {
        Decoded::Record(e, len) if len == v.len() - n - 1 => Some((node, e)),
        _ => None,
    }
}

/// A stream id (`<ms>-<seq>`).
pub fn id(s: &str) -> Option<(u64, u64)> {
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The bytes of a string reply.
pub fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// The entries of an `XRANGE` (or `XREVRANGE`) reply: each id with its value.
pub fn range_entries(list: &Value) -> Vec<(String, Vec<u8>)> {
    items(list)
        .iter()
        .filter_map(|e| {
            let [id, fields] = items(e) else { return None };
            let id = String::from_utf8(bytes(id)?.to_vec()).ok()?;
            let value = items(fields).get(1).and_then(bytes).unwrap_or_default();
            Some((id, value.to_vec()))
        })
        .collect()
}

/// The entries of an `XREAD` reply of one stream (none when it timed out).
pub fn read_entries(v: &Value) -> Vec<(String, Vec<u8>)> {
    match v {
        // RESP2: [[stream, entries]].
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match items(s) {
                [_, list] => range_entries(list),
                _ => Vec::new(),
            })
            .collect(),
        // RESP3: a map of stream to entries.
        Value::Map(m) => m.iter().flat_map(|(_, list)| range_entries(list)).collect(),
        _ => Vec::new(),
    }
}

/// What `XINFO STREAM` says of the ids a stream holds and held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// The first id it holds.
    pub first: Option<(u64, u64)>,
    /// The last id it gave.
    pub last: Option<(u64, u64)>,
    /// The greatest id deleted with `XDEL` (Redis 7 and later; trimming leaves it).
    pub max_deleted: Option<(u64, u64)>,
}

impl StreamInfo {
    /// Reads an `XINFO STREAM` reply (RESP2 pairs or a RESP3 map).
    pub fn of(v: &Value) -> StreamInfo {
        let pairs: Vec<(&Value, &Value)> = match v {
            Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
            _ => items(v)
                .chunks(2)
                .filter_map(|p| Some((p.first()?, p.get(1)?)))
                .collect(),
        };
        let id_of = |v: &Value| id(std::str::from_utf8(bytes(v)?).ok()?);
        let mut info = StreamInfo::default();
        for (k, v) in pairs {
            match bytes(k) {
                Some(b"first-entry") => info.first = items(v).first().and_then(id_of),
                Some(b"last-generated-id") => info.last = id_of(v),
                Some(b"max-deleted-entry-id") => info.max_deleted = id_of(v),
                _ => {}
            }
        }
        info
    }
}

/// The cursor and values of an `HSCAN` reply.
pub fn scan_page(v: &Value) -> Option<(u64, Vec<Vec<u8>>)> {
    let [cursor, pairs] = items(v) else {
        return None;
    };
    let cursor = std::str::from_utf8(bytes(cursor)?).ok()?.parse().ok()?;
    let values = items(pairs)
        .chunks(2)
        .filter_map(|p| p.get(1).and_then(bytes).map(<[u8]>::to_vec))
        .collect();
    Some((cursor, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suppression::record::{Kind, Op};

    #[test]
    fn a_value_round_trips_and_garbage_is_none() {
        let e = Entry {
            op: Op::Remove,
            kind: Kind::Manual,
            tenant: "acme".into(),
            address: "a b@x.test".into(),
            reason: "asked".into(),
            by: "127.0.0.1 token".into(),
            at: 1_700_000_000,
            expires: 0,
        };
        let v = value(&e, "node-1");
        assert!(v.starts_with(b"1700000000 node-1 "));
        assert_eq!(decode(&v), Some(("node-1".to_owned(), e.clone())));
        assert_eq!(field(&e), "acme a b@x.test");
        for cut in 0..v.len() {
            assert_eq!(decode(&v[..cut]), None, "{cut}");
        }
        assert_eq!(decode(b"12 n garbage"), None);
        assert_eq!(id("1700000000000-3"), Some((1_700_000_000_000, 3)));
        assert_eq!(id("nope"), None);
    }

    #[test]
    fn replies_are_read_whatever_their_shape() {
        let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
        let entry = |id: &str, v: &str| Value::Array(vec![s(id), Value::Array(vec![s("e"), s(v)])]);
        let xread = Value::Array(vec![Value::Array(vec![
            s("mta:suppression"),
            Value::Array(vec![entry("1-0", "a"), entry("2-0", "b")]),
        ])]);
        let got = read_entries(&xread);
        assert_eq!(
            got,
            vec![("1-0".into(), b"a".to_vec()), ("2-0".into(), b"b".to_vec())]
        );
        let xrange = Value::Array(vec![entry("5-1", "c")]);
        assert_eq!(range_entries(&xrange), vec![("5-1".into(), b"c".to_vec())]);
        assert!(read_entries(&Value::Nil).is_empty());
        let hscan = Value::Array(vec![s("7"), Value::Array(vec![s("f1"), s("v1"), s("f2")])]);
        assert_eq!(scan_page(&hscan), Some((7, vec![b"v1".to_vec()])));
        assert_eq!(scan_page(&Value::Nil), None);
        let info = Value::Array(vec![
            s("length"),
            Value::Int(1),
            s("last-generated-id"),
            s("9-0"),
            s("max-deleted-entry-id"),
            s("4-2"),
            s("first-entry"),
            entry("5-0", "x"),
        ]);
        assert_eq!(
            StreamInfo::of(&info),
            StreamInfo {
                first: Some((5, 0)),
                last: Some((9, 0)),
                max_deleted: Some((4, 2)),
            }
        );
    }
}
