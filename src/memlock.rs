//! Locked memory: what the shards' io_uring rings need, checked before any executor starts.
//!
//! What it does: probes that an io_uring ring can be created at all (it cannot when the kernel
//! lacks io_uring, forbids it, or the locked-memory limit is too small for a ring on kernels
//! that charge rings to it), and compares `ulimit -l` (`RLIMIT_MEMLOCK`) with what the shards
//! register: each shard's executor registers `io_memory` of buffers for each of its three rings
//! (measured on Linux 6.18 as a non-root user: with `io_memory = 2MiB` one shard starts with
//! buffers registered from 7 MiB of locked memory, not with 6 MiB; with 1 MiB, from 4 MiB).
//!
//! What it does not do: no change of the limit, no check for root (its `CAP_IPC_LOCK` makes
//! the limit irrelevant, so the comparison is skipped), no executor setup.
//!
//! Invariants: one line of explanation for the operator, never a panic; a probe ring is closed
//! at once.

/// What one shard needs of locked memory: `io_memory` for each of three rings, plus 1 MiB.
pub fn needed_per_shard(io_memory: u64) -> u64 {
    io_memory.saturating_mul(3).saturating_add(1 << 20)
}

/// The soft `RLIMIT_MEMLOCK`, `None` if unlimited or unreadable.
fn limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(r.rlim_cur)
}

/// True if an io_uring ring of 8 entries can be created (it is closed again at once).
fn ring_can_be_created() -> Result<(), std::io::Error> {
    // struct io_uring_params is 120 bytes; zeroed asks for the defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(2) with a valid, writable params buffer of the kernel's size.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 8u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: closing the descriptor we just got.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// Checks before the executors start. `Err` is one line saying what is wrong and how to fix
/// it (the caller exits with status 2); `Ok(Some(line))` is a warning (the MTA runs, slower:
/// some shards without registered buffers); `Ok(None)` is all well.
pub fn check(shards: usize, io_memory: u64) -> Result<Option<String>, String> {
    let need = needed_per_shard(io_memory).saturating_mul(shards as u64);
    let kib = |b: u64| b.div_ceil(1024);
    if let Err(e) = ring_can_be_created() {
        let limit = limit().map_or("unlimited".to_owned(), |l| format!("{} KiB", kib(l)));
        return Err(format!(
            "cannot create an io_uring ring ({e}); io_uring needs Linux 5.8 or later, allowed \
             to this process, and locked memory (ulimit -l is {limit}; {shards} shards need \
             about {} KiB: raise LimitMEMLOCK= in the systemd unit or ulimit -l)",
            kib(need)
        ));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(None);
    }
    match limit() {
        Some(l) if l < need => Ok(Some(format!(
            "locked memory limit (ulimit -l) is {} KiB, but {shards} shards with io_memory = \
             {} KiB need about {} KiB: some shards run without registered buffers (slower); \
             raise LimitMEMLOCK= in the systemd unit (or ulimit -l), or lower shards or io_memory",
            kib(l),
            kib(io_memory),
            kib(need)
        ))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_need_follows_the_measurement() {
        assert_eq!(needed_per_shard(2 << 20), 7 << 20);
        assert_eq!(needed_per_shard(1 << 20), 4 << 20);
        assert_eq!(needed_per_shard(u64::MAX), u64::MAX);
    }

    #[test]
    fn a_ring_can_be_created_here() {
        // The test suite itself runs glommio executors: a ring must be possible.
        assert!(check(1, 2 << 20).is_ok());
    }
}
