//! Where the load generator's and the sink's executors run.
//!
//! What it does: [`placement`] turns a thread count and the `--pin` choice into glommio's
//! pool placement: unpinned by default (the kernel places and moves the threads), one executor
//! per core, spread, with `--pin`.
//!
//! What it does not do: no choice of the thread count (the CLI does).
//!
//! Invariants: pinning never asks for more cores than the machine has (more threads than
//! cores run unpinned).
//!
//! Why unpinned by default: the MTA under test pins one shard to each core, and glommio spreads
//! a small pool from the first core, so a pinned load generator and a pinned sink both land on
//! the core of the first shard, which then carries three busy threads while another core has
//! one. Unpinned, the kernel balances them.

use glommio::PoolPlacement;

/// The placement of a pool of `threads` executors.
pub fn placement(threads: usize, pin: bool) -> PoolPlacement {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if pin && threads <= cpus {
        PoolPlacement::MaxSpread(threads, None)
    } else {
        PoolPlacement::Unbound(threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpinned_unless_asked_and_never_beyond_the_cores() {
        assert!(matches!(placement(1, false), PoolPlacement::Unbound(1)));
        assert!(matches!(
            placement(1, true),
            PoolPlacement::MaxSpread(1, None)
        ));
        assert!(matches!(
            placement(100_000, true),
            PoolPlacement::Unbound(100_000)
        ));
    }
}
