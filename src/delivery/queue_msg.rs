//! The queue task's channel: what it is told, and the handle that tells it.
//!
//! What it does: defines the typed messages of the one local channel a shard's queue task
//! reads (new mail, routes found, connection reports, operators' requests, reloads, the stop),
//! and [`QueueHandle`], the cheap sending end that tasks of the shard hold.
//!
//! What it does not do: no handling (the queue task), no cross-shard traffic (the channel is
//! local to the shard's executor).
//!
//! Invariants: every message is a value: it owns its data or shares only immutable envelopes
//! (`Rc<Message>`, bodies); a send to a queue task that has ended is dropped (it is stopping).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_channel::oneshot;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::message::Message;
use super::recorder::JobResult;
use super::route::Routed;
use super::views::{Actor, Answer, Request};
use crate::config::Config;
use crate::queue::{DestinationKey, Job};
use crate::shaping::Shaping;
use crate::smtp::{EnhancedStatus, Reply};
use crate::spool::MessageRecord;

/// A new channel: its handle, and the receiving end for the queue task.
pub fn channel() -> (QueueHandle, LocalReceiver<QueueMsg>) {
    let (tx, rx) = local_channel::new_unbounded();
    (QueueHandle(Rc::new(tx)), rx)
}

/// Work handed to a connection: one transaction's jobs (one message's recipients for one
/// destination, maybe of several domains), the message's envelope and, when the queue holds
/// it, the body.
pub struct Delivery {
    /// The jobs, at least one, all of `msg`: their recipients go in one transaction, in this
    /// order, and each job's result is reported on its own.
    pub jobs: Vec<Job>,
    /// The message's envelope.
    pub msg: Rc<Message>,
    /// The body, if held (else the connection reads it from the spool).
    pub body: Option<Rc<Vec<u8>>>,
}

/// The queue's answer to a connection asking for work.
pub enum Next {
    /// A job.
    Job(Delivery),
    /// Nothing ready now.
    Idle,
    /// The queue is stopping (or gone): start nothing more.
    Stop,
}

/// What the queue task is told.
pub enum QueueMsg {
    /// A message the server accepted (its whole body).
    Accepted(MessageRecord),
    /// A DSN this shard queued (already in the spool).
    Dsn(MessageRecord),
    /// A domain was routed.
    Routed(Job, Routed),
    /// A connection task reports.
    Conn(ConnEvent),
    /// An operator asks.
    Admin(Request, Actor, oneshot::Sender<Answer>),
    /// A reloaded configuration and shaping file (None: keep the shaping file in force, its
    /// reload failed; `Some(None)`: no shaping file).
    Reload(Arc<Config>, Option<Option<Arc<Shaping>>>),
    /// Stop: start nothing new, end when the connections have.
    Stop,
}

/// What a connection task reports.
pub enum ConnEvent {
    /// A hop refused us at the greeting or EHLO (shown to the shaping rules).
    Refused {
        /// The destination.
        dest: DestinationKey,
        /// The refusal.
        reply: Reply,
    },
    /// A host's opportunistic TLS failed: plaintext to it until then.
    TlsFallback {
        /// The host.
        addr: SocketAddr,
        /// Until.
        until: Instant,
    },
    /// No hop answered (or none could be authenticated with).
    OpenFailed {
        /// The destination.
        dest: DestinationKey,
        /// The last hop's error.
        error: String,
        /// What the waiting jobs are deferred with (`4.4.1`, or a failed AUTH's `4.7.x`).
        status: EnhancedStatus,
    },
    /// Connected.
    Opened {
        /// The destination.
        dest: DestinationKey,
        /// The TLS the connection uses, described for `mta dest show`.
        tls: String,
    },
    /// Asks for the destination's next job.
    Next {
        /// The destination.
        dest: DestinationKey,
        /// Where the answer goes.
        reply: oneshot::Sender<Next>,
    },
    /// What became of a job; `read_back` is its body if it had to be read from the spool.
    Finished {
        /// The destination.
        dest: DestinationKey,
        /// The result.
        result: JobResult,
        /// The body read back from the spool, if it was.
        read_back: Option<Rc<Vec<u8>>>,
    },
    /// The connection is closed.
    Closed {
        /// The destination.
        dest: DestinationKey,
    },
}

/// The sending end of a queue task's channel (cheap to clone; this shard only).
#[derive(Clone)]
pub struct QueueHandle(Rc<LocalSender<QueueMsg>>);

impl QueueHandle {
    /// Sends a message (dropped if the queue task has ended: it is stopping).
    pub fn send(&self, msg: QueueMsg) {
        let _ = self.0.try_send(msg);
    }

    /// Reports a connection event.
    pub fn conn(&self, event: ConnEvent) {
        self.send(QueueMsg::Conn(event));
    }

    /// Asks for the next job of `dest`.
    pub async fn next_job(&self, dest: &DestinationKey) -> Next {
        let (tx, rx) = oneshot::channel();
        self.conn(ConnEvent::Next {
            dest: dest.clone(),
            reply: tx,
        });
        rx.await.unwrap_or(Next::Stop)
    }

    /// Asks an operator's question (`by` is who asks); None once the queue task has ended.
    pub async fn ask(&self, request: Request, by: Actor) -> Option<Answer> {
        let (tx, rx) = oneshot::channel();
        self.send(QueueMsg::Admin(request, by, tx));
        rx.await.ok()
    }
}
