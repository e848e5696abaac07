//! The inbound SMTP server of one shard: accept loop, connections and sessions.
//!
//! What it does: accepts connections on the shard's own listeners, runs one task per
//! connection that drives a sans-IO [`session::Session`] over the socket, and hands complete
//! messages to the shard's spool (DKIM-signed first when in scope, see [`dkim`]); the reply `250` goes out only once the spool says the message
//! is durable.
//!
//! What it does not do: no delivery (accepted messages leave through a value handed to the
//! shard, never by a call into delivery), no cross-shard state.
//!
//! Invariants: everything here lives on one executor thread (`Rc`, `Cell`, `RefCell`, no
//! borrow held across `.await`); every socket has TCP_NODELAY.

pub mod admission;
pub mod buffers;
pub mod connection;
pub mod dkim;
pub mod feedback;
pub mod listener;
pub mod login;
pub mod proxy_header;
pub mod received;
pub mod relay;
pub mod replies;
pub mod session;
pub mod session_config;
pub mod transaction;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::FailureThrottle;
use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::spool::{MessageRecord, QueueIdGenerator, Spool};

/// Inbound timeouts (RFC 5321 4.5.3.2), from `[smtp.timeouts]`.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From the greeting to the first command.
    pub greeting: Duration,
    /// Between commands.
    pub command: Duration,
    /// Between reads of message data.
    pub data_block: Duration,
    /// The whole of one DATA or BDAT transfer.
    pub data_termination: Duration,
}

/// What a connection does with a message once it is durable and acknowledged: hand it on,
/// by value, to whoever delivers it (the shard's queue).
pub type HandOn = Rc<dyn Fn(MessageRecord)>;

/// Everything a shard's connections share. The settings in cells are replaced whole by a
/// reload ([`ServerContext::reload`]); a connection reads them once, when it starts.
pub struct ServerContext {
    /// Inbound timeouts.
    pub timeouts: Cell<Timeouts>,
    /// Connection limit of this shard.
    pub max_connections: Cell<usize>,
    /// This shard's spool.
    pub spool: Spool,
    /// Queue ids of this shard (shared with the delivery queue, which queues DSNs).
    pub ids: Rc<RefCell<QueueIdGenerator>>,
    /// Where acknowledged messages go next (the shard's delivery queue), called once per
    /// message after its `250`; None = hold them.
    pub accepted: Option<HandOn>,
    /// Octets of new mail the spool's file system can take (kept fresh by a monitor task).
    pub storage_available: Cell<u64>,
    /// The free space kept on the spool's file system: `spool.min_free_space` and
    /// `spool.min_free_percent` (the monitor task reads them at every check).
    pub storage_floor: Cell<(u64, f64)>,
    /// The shard's stop notice.
    pub shutdown: Rc<Shutdown>,
    /// Per-client-address limits, for the whole host (shared by every shard).
    pub admission: Arc<admission::Admission>,
    /// Connections open now.
    pub active: Cell<usize>,
    /// Inbound TLS (certificates), swapped whole on reload; None = no certificate.
    pub tls: RefCell<Option<crate::tls::ServerTls>>,
    /// AUTH credential checks.
    pub login: login::Login,
    /// The shard's metrics.
    pub metrics: Rc<crate::metrics::ShardMetrics>,
    /// The shard's memory: queued mail and mail being received (new mail gets `452 4.3.1`
    /// when it is full).
    pub gauge: Rc<crate::gauge::MemoryGauge>,
    /// DKIM signing of accepted mail; None = `[dkim]` disabled.
    pub dkim: Option<dkim::Signing>,
    /// The shard's event log.
    pub log: Rc<crate::eventlog::EventLog>,
    /// Read buffers, reused from one connection to the next.
    pub buffers: buffers::BufferPool,
    /// The host's suppression list; None = `suppression.enabled` is off.
    pub suppression: Option<Arc<crate::suppression::Suppression>>,
    /// Reports coming back (`[feedback]`); None = no report addresses.
    pub feedback: Option<Rc<crate::feedback::Shard>>,
}

/// What a shard's server shares with the rest of the shard (and, for the AUTH throttle, with
/// the other shards).
pub struct Shared {
    /// This shard's spool.
    pub spool: Spool,
    /// Queue ids of this shard.
    pub ids: Rc<RefCell<QueueIdGenerator>>,
    /// Where acknowledged messages go next; None = hold them.
    pub accepted: Option<HandOn>,
    /// The shard's stop notice.
    pub shutdown: Rc<Shutdown>,
    /// AUTH failures, counted across shards.
    pub auth_throttle: Arc<Mutex<FailureThrottle>>,
    /// Per-client-address limits, counted across shards ([`admission::Admission::host`]).
    pub admission: Arc<admission::Admission>,
    /// The shard's metrics.
    pub metrics: Rc<crate::metrics::ShardMetrics>,
    /// The shard's memory gauge (the delivery queue publishes what it holds).
    pub gauge: Rc<crate::gauge::MemoryGauge>,
    /// The shard's event log (receptions and rejections are written here).
    pub log: Rc<crate::eventlog::EventLog>,
}

impl ServerContext {
    /// The server context of one shard.
    pub fn new(config: &Config, shared: Shared) -> Self {
        let Shared {
            spool,
            ids,
            accepted,
            shutdown,
            auth_throttle,
            admission,
            metrics,
            gauge,
            log,
        } = shared;
        ServerContext {
            timeouts: Cell::new(Timeouts::from_config(config)),
            max_connections: Cell::new(config.smtp.max_connections),
            spool,
            ids,
            accepted,
            storage_available: Cell::new(u64::MAX),
            storage_floor: Cell::new(storage_floor(config)),
            shutdown,
            admission,
            active: Cell::new(0),
            tls: RefCell::new(None),
            login: login::Login::new(&config.auth, None, auth_throttle),
            metrics,
            gauge,
            dkim: None,
            suppression: None,
            feedback: None,
            log,
            buffers: buffers::BufferPool::new(connection::read_buffer_size(config)),
        }
    }

    /// Takes a reloaded configuration's inbound limits and timeouts (connections that start
    /// from now on get them; those open keep theirs), the spool's free-space floor, the AUTH
    /// failure delay and throttle, and the event log's rotation. The per-listener session
    /// settings are the caller's (they hang on the listeners).
    pub fn reload(&self, config: &Config) {
        self.timeouts.set(Timeouts::from_config(config));
        self.max_connections.set(config.smtp.max_connections);
        self.admission
            .set_limits(admission::Limits::from_config(config));
        self.storage_floor.set(storage_floor(config));
        self.login.reload(&config.auth);
        self.log.set_rotation(&config.log);
    }
}

impl Timeouts {
    /// The timeouts of `[smtp.timeouts]`.
    pub fn from_config(config: &Config) -> Timeouts {
        let t = &config.smtp.timeouts;
        Timeouts {
            greeting: t.greeting.0,
            command: t.command.0,
            data_block: t.data_block.0,
            data_termination: t.data_termination.0,
        }
    }
}

fn storage_floor(config: &Config) -> (u64, f64) {
    (config.spool.min_free_space.0, config.spool.min_free_percent)
}
