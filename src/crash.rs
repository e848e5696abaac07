//! The process-wide panic policy: a panic anywhere ends the whole process at once.
//!
//! What it does: [`install`] sets a panic hook that prints the panic (Rust's default report:
//! thread name, message, location, a backtrace when `RUST_BACKTRACE` asks for one), logs one
//! `error` line naming the thread, and exits the process with [`EXIT_PANIC`] without running
//! destructors or waiting for other threads. A shard is one thread; if it died alone the
//! kernel would still hand it a share of the new connections on every `SO_REUSEPORT`
//! listener, and they would never be greeted. Exiting lets the supervisor (systemd's
//! `Restart=on-failure`) start a whole process again; the spool is append-only and
//! checksummed, so recovery finds every acknowledged message, exactly as after `kill -9`.
//!
//! It also holds the fault-injection switch the crash tests use ([`fault_panic_after`]): the
//! `MTA_FAULT_PANIC_AFTER` environment variable, read once at start, makes a shard panic after
//! it has acknowledged that many messages. It is off unless set, and only the process's own
//! environment can set it.
//!
//! What it does not do: no recovery inside the process (no restarting a shard: its spool, queue
//! and sessions would have to be rebuilt while the others run), no core dumps.
//!
//! Invariants: once installed, no panic returns control to the program; the exit status is
//! [`EXIT_PANIC`] whatever thread panicked.

/// Exit status after a panic: 70, `EX_SOFTWARE` ("internal software error", sysexits.h).
pub const EXIT_PANIC: i32 = 70;

/// The environment variable of the fault-injection switch (see the module header).
pub const FAULT_PANIC_AFTER: &str = "MTA_FAULT_PANIC_AFTER";

/// Installs the panic policy. Call once, early in `main`, after logging is set up.
pub fn install() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        tracing::error!(
            thread = name,
            status = EXIT_PANIC,
            "a thread panicked: exiting the whole process; the spool recovers at the next start"
        );
        // SAFETY: `_exit` ends the process without running anything else; nothing here needs
        // to be flushed (the report above is written unbuffered, the spool is crash-safe).
        unsafe { libc::_exit(EXIT_PANIC) }
    }));
}

/// The fault-injection threshold, if `MTA_FAULT_PANIC_AFTER` holds a positive number.
pub fn fault_panic_after() -> Option<u64> {
    std::env::var(FAULT_PANIC_AFTER)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
}

/// The fault-injection task: panics once `accepted()` (the shard's acknowledged messages)
/// reaches `after`, as a bug in shard `index` would.
pub async fn panic_after(accepted: impl Fn() -> u64, after: u64, index: usize) {
    while accepted() < after {
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("shard {index}: fault injection after {after} acknowledged messages");
}
