//! The Prometheus text of a node's cluster state: whether it is degraded, how many nodes it
//! sees, the Redis commands its agent sent and the times it lost Redis.
//!
//! What it does: encodes one [`ClusterLink`]'s figures (host-wide, no `shard` label) with
//! the same encoder as the shards' metrics, to be appended to them.
//!
//! What it does not do: no HTTP, no per-destination figures (`mta dest show` has those).
//!
//! Invariants: four families, no labels: cardinality is fixed.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

use crate::queue::ClusterLink;

/// The figures of one scrape.
#[derive(Debug)]
struct Figures {
    degraded: i64,
    nodes: i64,
    commands: u64,
    failures: u64,
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "cluster_degraded",
                "1 while Redis cannot be reached and limits run on this node's local share.",
                self.degraded,
            ),
            (
                "cluster_nodes",
                "Nodes in the cluster as last seen (at least cluster.assume_nodes).",
                self.nodes,
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let counters = [
            (
                "cluster_redis_commands",
                "Redis commands the cluster agent sent.",
                self.commands,
            ),
            (
                "cluster_failures",
                "Times the cluster agent lost Redis (each starts a degraded period).",
                self.failures,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// The Prometheus text of `link`'s state.
pub fn encode_cluster(link: &ClusterLink) -> String {
    let mut registry = Registry::with_prefix("mta");
    registry.register_collector(Box::new(Figures {
        degraded: i64::from(link.degraded()),
        nodes: i64::try_from(link.nodes()).unwrap_or(i64::MAX),
        commands: link.stats.commands.load(Ordering::Relaxed),
        failures: link.stats.failures.load(Ordering::Relaxed),
    }));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "encoding cluster metrics failed");
    }
    out
}
