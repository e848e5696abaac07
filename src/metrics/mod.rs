//! Per-shard metrics and their Prometheus exposition.
//!
//! What it does: [`ShardMetrics`] holds a shard's counters, gauges and fixed-bucket
//! histograms in plain cells, cheap to bump on a hot path; [`ShardMetrics::snapshot`] copies
//! them into a sendable [`Snapshot`]; [`encode`] turns the snapshots of all shards into the
//! Prometheus text format ([`CONTENT_TYPE`]).
//!
//! What it does not do: no HTTP (see `admin`), no gathering across shards (the caller sends
//! snapshots over channels), no global registry, no atomics.
//!
//! Invariants: the live cells never leave their shard; labels are only `shard` and the fixed
//! `outcome` / `reason` enums (plus `le` on buckets), so cardinality is bounded.

mod cells;
mod cluster;
mod encode;
mod histogram;
mod shard;

pub use cells::{BackpressureReason, Counter, Gauge, SessionOutcome};
pub use cluster::encode_cluster;
pub use encode::{CONTENT_TYPE, encode};
pub use histogram::{
    DELIVERY_LATENCY_SECONDS_BUCKETS, FDATASYNC_SECONDS_BUCKETS, GROUP_COMMIT_BATCH_BUCKETS,
    Histogram, HistogramSnapshot, REPLY_LATENCY_SECONDS_BUCKETS,
};
pub use shard::{ShardMetrics, Snapshot};
