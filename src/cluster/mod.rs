//! Cluster mode: limits and suspensions that hold across every node that names the same
//! Redis (`[cluster] redis = "redis://..."`).
//!
//! What it does: [`start`] makes the host registry of limits linked to this node's cluster
//! agent (`agent.rs`: a thread that owns the Redis connection, takes connection leases and
//! rate tokens in batches for the shards, publishes their suspensions and reductions) and
//! starts the subscriber (`subscriber.rs`: applies what other nodes decide). The shards
//! never call Redis: they spend leases and tokens from atomics the agent fills, so a message
//! costs no round trip and Redis sees far fewer calls than messages.
//!
//! The client is the `redis` crate's synchronous connection, on two threads of their own:
//! glommio has no Redis client of its own, and a background thread keeps every Redis wait
//! off the shards' executors.
//!
//! What it does not do: no spool sharing (each node keeps its own spool), no routing of mail
//! between nodes.
//!
//! Invariants: see `leases.rs` (connection limits are never exceeded, also while degraded)
//! and `agent.rs` (bounded batches and timeouts); every key written starts with the
//! configured prefix.

mod agent;
mod leases;
mod scripts;
mod subscriber;
mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::ClusterSection;
use crate::queue::{ClusterLink, HostLimits};

/// The cluster settings the threads use.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The Redis address.
    pub redis: String,
    /// The key prefix.
    pub prefix: String,
    /// This node's name.
    pub node: String,
    /// One call's time limit.
    pub timeout: Duration,
    /// A grant's life in Redis.
    pub lease_ttl: Duration,
    /// When a silent node is forgotten.
    pub dead_after: Duration,
    /// The least number of nodes the local share assumes.
    pub assume_nodes: usize,
}

impl Settings {
    /// From the configuration (`hostname` names the node when `cluster.node` is empty).
    pub fn from_config(c: &ClusterSection, hostname: &str) -> Settings {
        Settings {
            redis: c.redis.clone(),
            prefix: c.prefix.clone(),
            node: match c.node.is_empty() {
                true => hostname.to_owned(),
                false => c.node.clone(),
            },
            timeout: c.timeout.0,
            lease_ttl: c.lease_ttl.0,
            dead_after: c.dead_after.0,
            assume_nodes: c.assume_nodes.max(1),
        }
    }

    /// A node silent this long (three missed heartbeats) runs on its local share.
    pub fn stale(&self) -> Duration {
        Duration::from_secs(3)
    }
}

/// The Redis keys of a cluster.
pub struct Keys {
    prefix: String,
    /// The node registry (hash: node → last heartbeat, Unix ms).
    pub nodes: String,
    /// The suspension table (hash: destination → until, node, reason).
    pub suspensions: String,
    /// The channel of decisions.
    pub channel: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            nodes: format!("{prefix}nodes"),
            suspensions: format!("{prefix}suspensions"),
            channel: format!("{prefix}decisions"),
        }
    }

    /// A destination's lease hash.
    pub fn lease(&self, dest: &str) -> String {
        format!("{}lease:{dest}", self.prefix)
    }

    /// A destination's message (or connection) rate schedule.
    pub fn rate(&self, dest: &str, connections: bool) -> String {
        let kind = if connections {
            "connections"
        } else {
            "messages"
        };
        format!("{}rate:{kind}:{dest}", self.prefix)
    }
}

/// The running cluster threads.
pub struct Cluster {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The host registry for `config`: linked to a cluster agent (started here) when a Redis is
/// configured, local otherwise.
pub fn start(config: &ClusterSection, hostname: &str) -> (Arc<HostLimits>, Option<Cluster>) {
    if !config.enabled() {
        return (Arc::new(HostLimits::new()), None);
    }
    let settings = Settings::from_config(config, hostname);
    let (tx, rx) = std::sync::mpsc::channel();
    let link = Arc::new(ClusterLink::new(tx));
    let host = Arc::new(HostLimits::with_cluster(link.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let agent = agent::Agent::new(settings.clone(), host.clone(), link, rx, stop.clone());
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new().name(name.into()).spawn(f)
    };
    match spawn("cluster", Box::new(move || agent.run())) {
        Ok(t) => threads.push(t),
        Err(e) => tracing::error!(error = %e, "cannot start the cluster agent"),
    }
    let (h, s) = (host.clone(), stop.clone());
    match spawn(
        "cluster-sub",
        Box::new(move || subscriber::run(settings, h, s)),
    ) {
        Ok(t) => threads.push(t),
        Err(e) => tracing::error!(error = %e, "cannot start the cluster subscriber"),
    }
    tracing::info!(redis = %config.redis, "cluster mode: limits shared through Redis");
    (host, Some(Cluster { stop, threads }))
}

impl Cluster {
    /// Stops the threads: the agent gives its leases back and leaves the node registry.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            let _ = t.join();
        }
    }
}
