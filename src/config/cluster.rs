//! `[cluster]`: the Redis that several MTA nodes share so that their delivery limits and
//! suspensions hold for all of them together.
//!
//! What it does: the section's keys with their defaults, and their validation (a `redis://`
//! address, a key prefix and node name of printable characters, timings that fit each other).
//!
//! What it does not do: no connection to Redis (`crate::cluster` connects), no reloading (the
//! whole section takes effect at the next start).
//!
//! Invariants: a validated section has `lease_ttl >= 1s`, `timeout < lease_ttl / 4` (a renewal
//! that times out still leaves the lease valid) and `dead_after > lease_ttl`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, HumanDuration};

/// `[cluster]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// `redis://host:port/db` (or `redis://:password@host:port/db`); empty = no cluster: every
    /// limit holds for this host alone.
    pub redis: String,
    /// Prefix of every key the MTA writes in that Redis (several clusters may share one).
    pub prefix: String,
    /// This node's name, unique in the cluster. Default: the configuration's `hostname`.
    pub node: String,
    /// How long one Redis call may take before the cluster state counts as degraded.
    pub timeout: HumanDuration,
    /// How long a node's connection leases live in Redis without renewal (a node that dies
    /// loses them after that).
    pub lease_ttl: HumanDuration,
    /// How long a node that stopped answering is presumed alive (running on its local share)
    /// before its share is given to the others.
    pub dead_after: HumanDuration,
    /// The least number of nodes this node assumes when it computes its local share (while
    /// Redis cannot say how many there are).
    pub assume_nodes: usize,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            redis: String::new(),
            prefix: "mta:".into(),
            node: String::new(),
            timeout: HumanDuration(Duration::from_millis(500)),
            lease_ttl: HumanDuration::secs(10),
            dead_after: HumanDuration::secs(60),
            assume_nodes: 2,
        }
    }
}

impl ClusterSection {
    /// True when a Redis is named.
    pub fn enabled(&self) -> bool {
        !self.redis.is_empty()
    }

    /// Checks the section.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: &str| {
            Err(ConfigError::Invalid {
                key: format!("cluster.{key}"),
                problem: problem.to_owned(),
            })
        };
        if !self.enabled() {
            return Ok(());
        }
        if !self.redis.starts_with("redis://") {
            return invalid("redis", "must be a redis:// address");
        }
        let printable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if self.prefix.len() > 64 || !printable(&self.prefix) {
            return invalid("prefix", "at most 64 printable characters, no spaces");
        }
        if self.node.len() > 128 || !printable(&self.node) {
            return invalid("node", "at most 128 printable characters, no spaces");
        }
        if self.lease_ttl.0 < Duration::from_secs(1) {
            return invalid("lease_ttl", "at least 1s");
        }
        if self.timeout.0.is_zero() || self.timeout.0 * 4 >= self.lease_ttl.0 {
            return invalid(
                "timeout",
                "more than 0 and less than a quarter of lease_ttl",
            );
        }
        if self.dead_after.0 <= self.lease_ttl.0 {
            return invalid("dead_after", "must be longer than lease_ttl");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_off_and_a_bad_section_names_its_key() {
        let c = ClusterSection::default();
        assert!(!c.enabled());
        c.check().unwrap();
        let on = ClusterSection {
            redis: "redis://127.0.0.1:6379/0".into(),
            ..ClusterSection::default()
        };
        on.check().unwrap();
        let bad = |c: ClusterSection| match c.check() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        let http = ClusterSection {
            redis: "http://x".into(),
            ..on.clone()
        };
        assert_eq!(bad(http), "cluster.redis");
        let slow = ClusterSection {
            timeout: HumanDuration::secs(5),
            ..on.clone()
        };
        assert_eq!(bad(slow), "cluster.timeout");
        let spaced = ClusterSection {
            node: "a b".into(),
            ..on.clone()
        };
        assert_eq!(bad(spaced), "cluster.node");
        let short = ClusterSection {
            dead_after: HumanDuration::secs(10),
            ..on
        };
        assert_eq!(bad(short), "cluster.dead_after");
    }
}
