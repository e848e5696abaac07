//! The Lua scripts the cluster runs inside Redis, and the commands that call them.
//!
//! What it does: three scripts, each atomic in Redis and timed by Redis's own clock (`TIME`),
//! so that nodes whose clocks differ still agree:
//! - `heartbeat`: records that a node is alive, forgets nodes silent past `dead_after`, and
//!   counts the nodes;
//! - `lease`: sets how many connection leases of a destination a node asks for, and grants
//!   what the limit leaves once the other nodes' live leases, and the local share of each
//!   node that went silent but is not yet presumed dead, are counted; it records what the node
//!   needs at least (its shards are refused below that), and says whether another node's
//!   need is unmet;
//! - `gcra`: takes up to `want` tokens from a destination's shared GCRA schedule.
//!
//! What it does not do: no connection handling (the agent sends these in pipelines), no
//! policy (the agent decides what to ask).
//!
//! Invariants: the sum of the grants recorded in a lease hash never exceeds the limit the
//! callers pass, counting a silent node's share as held; a GCRA grant never passes the
//! schedule's burst; every key written has an expiry (nothing lingers after the cluster
//! stops).

use std::time::Duration;

use redis::{Cmd, Script, Value};

const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] == '0' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
local all = redis.call('HGETALL', KEYS[1])
local live = 0
for i = 1, #all, 2 do
  if now - tonumber(all[i + 1]) > tonumber(ARGV[2]) then
    redis.call('HDEL', KEYS[1], all[i])
  else
    live = live + 1
  end
end
return live
";

const LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node, ask, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, stale, dead = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local need = tonumber(ARGV[7])
local others, waiting = 0, 0
local holders = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local g, a, e = string.match(entries[i + 1], '^(%d+):(%d+):(%d+)$')
  if g == nil or tonumber(e) <= now then
    redis.call('HDEL', KEYS[1], entries[i])
  elseif entries[i] ~= node then
    others = others + tonumber(g)
    holders[entries[i]] = true
    if tonumber(a) > tonumber(g) then waiting = 1 end
  end
end
local nodes = redis.call('HGETALL', KEYS[2])
local live, silent = 0, 0
for i = 1, #nodes, 2 do
  local age = now - tonumber(nodes[i + 1])
  if age <= dead then
    live = live + 1
    if age > stale and nodes[i] ~= node and not holders[nodes[i]] then
      silent = silent + 1
    end
  end
end
if live < 1 then live = 1 end
local grant = math.min(ask, limit - others - silent * math.floor(limit / live))
if grant < 0 then grant = 0 end
if ask == 0 then
  redis.call('HDEL', KEYS[1], node)
else
  redis.call('HSET', KEYS[1], node, grant .. ':' .. need .. ':' .. (now + ttl))
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
return {grant, waiting}
";

const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period, tolerance, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local room = tolerance - (tat - now)
if room < 0 then
  return {0, tat - tolerance - now}
end
local n = math.min(want, math.floor(room / period) + 1)
tat = tat + n * period
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return {n, 0}
";

/// The scripts, with their SHA1 digests.
pub struct Scripts {
    heartbeat: Script,
    lease: Script,
    gcra: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            heartbeat: Script::new(HEARTBEAT),
            lease: Script::new(LEASE),
            gcra: Script::new(GCRA),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a lease call asks.
pub struct LeaseAsk<'a> {
    /// The destination's lease hash.
    pub key: &'a str,
    /// The node registry.
    pub nodes: &'a str,
    /// This node.
    pub node: &'a str,
    /// Leases wanted in all (0 gives every lease back).
    pub ask: usize,
    /// Leases needed at least (0 when no shard is refused).
    pub need: usize,
    /// The destination's limit.
    pub limit: usize,
    /// How long the grant lives.
    pub ttl: Duration,
    /// A node silent this long runs on its local share.
    pub stale: Duration,
    /// A node silent this long is forgotten.
    pub dead: Duration,
}

impl Scripts {
    /// The commands that load every script (after a connect).
    pub fn load(&self) -> Vec<Cmd> {
        [HEARTBEAT, LEASE, GCRA]
            .into_iter()
            .map(|src| {
                let mut c = redis::cmd("SCRIPT");
                c.arg("LOAD").arg(src);
                c
            })
            .collect()
    }

    fn call(script: &Script, keys: &[&str]) -> Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(script.get_hash()).arg(keys.len());
        for k in keys {
            c.arg(*k);
        }
        c
    }

    /// Records `node` alive (or gone, `alive == false`) in registry `nodes`.
    pub fn heartbeat(&self, nodes: &str, node: &str, dead: Duration, alive: bool) -> Cmd {
        let mut c = Self::call(&self.heartbeat, &[nodes]);
        c.arg(node).arg(ms(dead)).arg(u8::from(alive));
        c
    }

    /// Sets a node's ask of a destination's leases.
    pub fn lease(&self, a: &LeaseAsk<'_>) -> Cmd {
        let mut c = Self::call(&self.lease, &[a.key, a.nodes]);
        c.arg(a.node)
            .arg(a.ask)
            .arg(a.limit)
            .arg(ms(a.ttl))
            .arg(ms(a.stale))
            .arg(ms(a.dead))
            .arg(a.need);
        c
    }

    /// Takes up to `want` tokens of a schedule of one token per `period` with a burst of
    /// `burst`.
    pub fn gcra(&self, key: &str, period: Duration, burst: u32, want: u64) -> Cmd {
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX).max(1);
        let tolerance = period_us.saturating_mul(u64::from(burst.max(1)) - 1);
        let mut c = Self::call(&self.gcra, &[key]);
        c.arg(period_us).arg(tolerance).arg(want);
        c
    }
}

/// An integer reply (or 0).
pub fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// A two-integer array reply (or zeros).
pub fn pair(v: &Value) -> (i64, i64) {
    match v {
        Value::Array(a) if a.len() >= 2 => (int(&a[0]), int(&a[1])),
        _ => (0, 0),
    }
}
