//! Every periodic chore of a shard, by name, with its period: the one place to look for what
//! runs on a clock.
//!
//! What it does: names the periods; each chore's loop sleeps for its period here.
//!
//! What it does not do: no scheduling of mail (the scheduler's `poll` says when the next retry
//! or connection is due, and the queue task sleeps exactly until then), no protocol timeouts
//! (those are per wait, in the configuration).
//!
//! Invariants: every loop that wakes on a clock takes its period from here.

use std::time::Duration;

/// How often a shard looks at the process-wide signal flags (stop, SIGHUP reload).
pub const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// How often a shard re-reads the spool's free space and flushes its event log.
pub const STORAGE_CHECK: Duration = Duration::from_secs(1);

/// How often the queue task does its chores: forgets routes (DNS answers and reloads show
/// within this), flushes the event log, re-applies destination limits as shaping rules relax,
/// and forgets idle destinations. Also the longest the queue task sleeps.
pub const QUEUE_CHORES: Duration = Duration::from_secs(1);

/// The pause of an idle outbound connection before it asks for a job again, for its first
/// [`IDLE_QUICK_LOOKS`] looks (the first 100 ms of idleness: gaps in a busy stream).
pub const IDLE_FIRST_LOOK: Duration = Duration::from_millis(10);

/// Looks at the short pause before the pauses double.
pub const IDLE_QUICK_LOOKS: u32 = 10;

/// The longest pause of an idle outbound connection between two looks: the longest a message
/// waits for an idle connection of its destination.
pub const IDLE_RECHECK: Duration = Duration::from_millis(160);

/// How often a stopping shard looks whether its sessions and connections have ended.
pub const DRAIN_POLL: Duration = Duration::from_millis(20);

/// The pause after a failed `accept` (out of descriptors, say) before the next one.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
