//! The spool's free-space monitor: refuses new mail before the disk fills.
//!
//! What it does: every second, reads the free space of the spool's file system (`statvfs`),
//! publishes what is left above the floor (`spool.min_free_space` or `spool.min_free_percent`,
//! whichever is larger, as the server context holds them: a reload changes them) to the server, which answers new transactions `452 4.3.1` at zero, and
//! flushes the shard's event log and hands the Message-IDs it gathered to the feedback index.
//!
//! What it does not do: no cleanup, no accounting of what the spool itself holds.
//!
//! Invariants: one call per second per shard; a failed `statvfs` counts as unlimited space
//! (the spool's own write errors still answer `452 4.3.1`).

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Config;
use crate::server::ServerContext;

/// Keeps `storage_available` fresh: free space on the spool's file system above the floor
/// (`spool.min_free_space` and `spool.min_free_percent`, whichever is larger).
pub(crate) async fn storage_monitor(ctx: Rc<ServerContext>, config: Arc<Config>) {
    loop {
        let available = match free_space(&config.spool.path) {
            Some((free, total)) => {
                let (min_free, min_percent) = ctx.storage_floor.get();
                let floor = min_free.max((total as f64 * min_percent / 100.0) as u64);
                free.saturating_sub(floor)
            }
            None => u64::MAX,
        };
        if available == 0 && ctx.storage_available.get() != 0 {
            tracing::warn!(path = %config.spool.path.display(), "spool below its free-space floor: refusing new mail with 452 4.3.1");
        }
        ctx.storage_available.set(available);
        ctx.log.flush();
        if let Some(fb) = &ctx.feedback {
            fb.chore();
        }
        glommio::timer::sleep(crate::timers::STORAGE_CHECK).await;
    }
}

/// (free octets for unprivileged users, total octets) of the file system holding `path`.
fn free_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
}
