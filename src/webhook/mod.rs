//! Webhooks: every event-log line, POSTed in signed batches to HTTP(S) endpoints, at least
//! once.
//!
//! What it does: [`Hooks::start`] starts one thread per `[[webhooks]]` entry (`runner`). Each
//! reads the shards' event-log files (`tail`, `files`) from its committed cursor (`cursor`),
//! filters by event type and tenant, POSTs batches signed with HMAC-SHA256 (`post`, `sign`)
//! and stores its cursor only after a `2xx`. [`Hooks`] also answers the event log's retention
//! ([`Hooks::releases`]: a rotated file is deleted only once every hook has read past it), the
//! admin view (`GET /webhooks`) and the `mta_webhook_*` metrics (`status`).
//!
//! What it does not do: no work on a shard's thread besides the retention question; no
//! writing of the event log (its durability is the log's: lines that describe acknowledged
//! changes reach the file before the change is acknowledged, `docs/WEBHOOKS.md`); no reload:
//! `[[webhooks]]` is read at start.
//!
//! Invariants: a hook's cursor never passes a line the endpoint has not acknowledged (or that
//! its filters leave out); each event carries its `id` (`<shard>-<start>-<seq>`, from the
//! event log) for the receiver to drop duplicates.

mod config;
pub mod cursor;
pub mod files;
pub mod post;
mod runner;
pub mod sign;
pub mod status;
pub mod tail;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use config::{MAX_BATCH, MIN_SECRET, WebhookConfig};
pub use post::SetupError;
pub use status::Status;

use runner::{Runner, Stop};

/// Why the hooks could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A hook's secret or trusted roots could not be read.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A hook's cursor could not be read or first stored.
    #[error("webhook {hook}: cursor {path}: {source}")]
    Cursor {
        /// The hook.
        hook: String,
        /// The cursor file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A hook's thread could not be started.
    #[error("webhook {hook}: cannot start its thread: {source}")]
    Thread {
        /// The hook.
        hook: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The running hooks of the host.
pub struct Hooks {
    log_dir: PathBuf,
    statuses: Vec<Arc<Mutex<Status>>>,
    stop: Arc<Stop>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// How long a stop waits for the hooks' threads (a POST in flight is abandoned after it: its
/// batch is sent again at the next start).
const STOP_WAIT: Duration = Duration::from_secs(2);

impl Hooks {
    /// Starts `hooks` over the event logs of `shards` shards in `log_dir`; `ca_file` replaces
    /// the system's trusted roots for `https://` endpoints. None when there is no hook.
    pub fn start(
        hooks: &[WebhookConfig],
        log_dir: &Path,
        shards: usize,
        ca_file: Option<&Path>,
    ) -> Result<Option<Arc<Hooks>>, WebhookError> {
        if hooks.is_empty() {
            return Ok(None);
        }
        let stop = Arc::new(Stop::default());
        let mut runners = Vec::new();
        let mut statuses = Vec::new();
        for hook in hooks {
            let poster = post::Poster::new(hook, ca_file)?;
            let (tails, stored) =
                Runner::open(hook, log_dir, shards).map_err(|source| WebhookError::Cursor {
                    hook: hook.name.clone(),
                    path: cursor::path(log_dir, &hook.name),
                    source,
                })?;
            let status = Arc::new(Mutex::new(Status {
                name: hook.name.clone(),
                url: hook.url.clone(),
                committed: stored
                    .shards
                    .iter()
                    .map(|(s, e)| (*s, (e.at, e.file.clone())))
                    .collect(),
                ..Status::default()
            }));
            statuses.push(status.clone());
            runners.push(Runner {
                hook: hook.clone(),
                poster,
                log_dir: log_dir.to_owned(),
                tails,
                status,
                stop: stop.clone(),
                unparsable: 0,
            });
        }
        let mut threads = Vec::new();
        for runner in runners {
            let name = runner.hook.name.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("webhook-{name}"))
                .spawn(move || runner.run());
            match spawned {
                Ok(t) => threads.push(t),
                Err(source) => {
                    stop.request();
                    return Err(WebhookError::Thread { hook: name, source });
                }
            }
        }
        tracing::info!(hooks = hooks.len(), "webhooks started");
        Ok(Some(Arc::new(Hooks {
            log_dir: log_dir.to_owned(),
            statuses,
            stop,
            threads: Mutex::new(threads),
        })))
    }

    /// Each hook's state now.
    pub fn statuses(&self) -> Vec<Status> {
        self.statuses
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// The `mta_webhook_*` metrics.
    pub fn metrics(&self) -> String {
        status::encode(&self.statuses())
    }

    /// True when the event log of `shard` may delete the rotated file at `path`: every hook
    /// has committed a position in a later file.
    pub fn releases(&self, shard: usize, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(inode) = std::fs::metadata(path).map(|m| m.ino()) else {
            return true;
        };
        let listed = files::list(&self.log_dir, shard);
        self.statuses.iter().all(|s| {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            s.committed
                .get(&shard)
                .is_some_and(|(at, _)| files::consumed(&listed, inode, *at))
        })
    }

    /// Asks every hook to stop and waits a little for them (see [`STOP_WAIT`]).
    pub fn stop(&self) {
        self.stop.request();
        let deadline = Instant::now() + STOP_WAIT;
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
