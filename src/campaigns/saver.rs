//! The thread that saves the host's campaign figures once a minute and at shutdown.
//!
//! What it does: [`Saver::start`] runs a thread that calls [`Campaigns::save`] every
//! [`EVERY`]; [`Saver::stop`] wakes it to save one last time and waits for it.
//!
//! What it does not do: no counting, no reading of the file (`Campaigns::open` does).
//!
//! Invariants: one save at a time; a failed save is logged and tried again at the next
//! period; after `stop` returns the file holds everything the shards handed over before it.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Campaigns;

/// How often the figures are saved: what a `kill -9` can lose.
pub const EVERY: Duration = Duration::from_secs(60);

/// See the module header.
pub struct Saver {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Saver {
    /// Starts saving `campaigns` every [`EVERY`].
    pub fn start(campaigns: Arc<Campaigns>) -> std::io::Result<Saver> {
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("campaign-stats".into())
            .spawn(move || {
                loop {
                    let last = !matches!(rx.recv_timeout(EVERY), Err(RecvTimeoutError::Timeout));
                    if let Err(e) = campaigns.save() {
                        tracing::warn!(error = %e, "campaign figures not saved");
                    }
                    if last {
                        return;
                    }
                }
            })?;
        Ok(Saver { stop, thread })
    }

    /// Saves one last time and stops.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
