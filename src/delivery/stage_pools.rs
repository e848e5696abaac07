//! Source addresses for outbound mail: which pool a message uses and which of its sources.
//!
//! What it does: decides a message's pool at intake (a header naming it, else the sender's
//! domain), and at routing (else the route's pool, else the default pool) picks one of the
//! pool's sources by weight; the destination then becomes "this destination from this source",
//! with its own queue, limits and shaping (the shaping file's `[source."<ip>"]` applies), and
//! its connections are made from that address with that source's EHLO name.
//!
//! What it does not do: no binding of sockets (the client does), no configuration checks
//! (`config::pools` does them).
//!
//! Invariants: a message without a pool, on a route without a `source`, is sent from whatever
//! address the system chooses, under the destination's plain key.

use std::cell::Cell;
use std::rc::Rc;

use super::*;

/// The value of header `name` in a message's header section (case-insensitive, unfolded).
pub(super) fn header_value(body: &[u8], name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    let mut taking = false;
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if taking && let Some(v) = value.as_mut() {
                v.push(' ');
                v.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        taking = false;
        if line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        {
            taking = true;
            value = Some(
                String::from_utf8_lossy(&line[name.len() + 1..])
                    .trim()
                    .to_owned(),
            );
        }
    }
    value.filter(|v| !v.is_empty())
}

impl Stage {
    /// The pool a message asks for at intake: its header, else its sender's domain.
    pub(super) fn pool_of(&self, record: &MessageRecord, body: &[u8]) -> Option<String> {
        let config = self.config();
        let sel = &config.pool_selection;
        if let Some(h) = &sel.header
            && let Some(v) = header_value(body, h)
            && config.pools.iter().any(|p| p.name == v)
        {
            return Some(v);
        }
        let domain = record.reverse_path.rsplit_once('@').map(|(_, d)| d)?;
        sel.senders
            .iter()
            .find(|s| s.domain.eq_ignore_ascii_case(domain))
            .map(|s| s.pool.clone())
    }

    /// The routed destination from one of the pool's sources (the target unchanged when the
    /// message has no pool).
    pub(super) fn with_source(
        &self,
        target: Rc<Target>,
        message_pool: Option<&str>,
        domain: &str,
        rng: &Cell<u64>,
    ) -> Rc<Target> {
        let config = self.config();
        let pool_name = message_pool
            .map(str::to_owned)
            .or_else(|| config.route_for(domain).and_then(|r| r.pool.clone()))
            .or_else(|| config.pool_selection.default.clone());
        let Some(pool) = pool_name.and_then(|n| config.pools.iter().find(|p| p.name == n)) else {
            return target;
        };
        let total: u64 = pool.sources.iter().map(|m| u64::from(m.weight)).sum();
        let mut state = rng.get();
        let mut pick = crate::queue::xorshift64(&mut state) % total.max(1);
        rng.set(state);
        let member = pool
            .sources
            .iter()
            .find(|m| {
                let w = u64::from(m.weight);
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(&pool.sources[0]);
        let Some(source) = config.sources.iter().find(|s| s.name == member.source) else {
            return target;
        };
        Rc::new(Target {
            key: DestinationKey(format!("{}@{}", target.key.0, source.name)),
            hops: target.hops.clone(),
            source: Some(source.address),
            limits: target.limits.clone(),
            tls: target.tls,
            retry: target.retry.clone(),
            helo: source.ehlo.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::header_value;

    #[test]
    fn header_values() {
        let m = b"Received: x\r\nX-Pool: bulk\r\nSubject: a\r\n folded\r\n\r\nX-Pool: body\r\n";
        assert_eq!(header_value(m, "x-pool").as_deref(), Some("bulk"));
        assert_eq!(header_value(m, "Subject").as_deref(), Some("a folded"));
        assert_eq!(header_value(m, "X-Other"), None);
        assert_eq!(header_value(b"\r\nX-Pool: late\r\n", "X-Pool"), None);
    }
}
