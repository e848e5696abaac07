//! Commands from the admin endpoint to the shards, and their answers.
//!
//! What it does: each shard owns an unbounded command queue ([`ShardLink`] is its sending
//! end); the admin endpoint, which runs on one shard, sends a command to every shard (or to
//! one), and awaits their answers on one-shot channels. Answers are plain data (`Send`).
//!
//! What it does not do: no HTTP (see `api`), no execution: the shard's own service task does
//! what a command asks, on its own executor (queue questions go to the queue task).
//!
//! Invariants: a command never carries or returns a shard-local value (`Rc`, cells); a shard
//! that has stopped answers nothing, and the asker gets an error for it instead of waiting.

use futures_channel::{mpsc, oneshot};
use futures_lite::StreamExt;

pub use crate::delivery::recorder::DeleteMode;
pub use crate::delivery::views::{Actor, Answer as QueueAnswer, Request};
use crate::metrics::Snapshot;

/// What an operator asks a shard.
#[derive(Clone, Debug)]
pub enum Command {
    /// The shard's metrics.
    Metrics,
    /// A question for the shard's queue, and who asks.
    Queue(Request, Actor),
}

/// A shard's answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// For [`Command::Metrics`].
    Metrics(Box<Snapshot>),
    /// The queue's typed answer.
    Queue(QueueAnswer),
}

type Envelope = (Command, oneshot::Sender<Answer>);

/// The sending end of a shard's command queue (`Send + Sync`, cheap to clone).
#[derive(Clone, Debug)]
pub struct ShardLink(mpsc::UnboundedSender<Envelope>);

/// The receiving end, owned by the shard's service task.
pub struct ShardInbox(mpsc::UnboundedReceiver<Envelope>);

/// A new command queue.
pub fn link() -> (ShardLink, ShardInbox) {
    let (tx, rx) = mpsc::unbounded();
    (ShardLink(tx), ShardInbox(rx))
}

impl ShardLink {
    /// Sends a command and awaits the answer; None if the shard is gone.
    pub async fn ask(&self, command: Command) -> Option<Answer> {
        let (tx, rx) = oneshot::channel();
        self.0.unbounded_send((command, tx)).ok()?;
        rx.await.ok()
    }
}

impl ShardInbox {
    /// The next command and where its answer goes; None once every link is dropped.
    pub async fn next(&mut self) -> Option<(Command, Reply)> {
        let (command, tx) = self.0.next().await?;
        Some((command, Reply(tx)))
    }
}

/// Where one answer goes.
pub struct Reply(oneshot::Sender<Answer>);

impl Reply {
    /// Sends the answer (the asker may have gone: ignored).
    pub fn send(self, answer: Answer) {
        let _ = self.0.send(answer);
    }
}

/// Asks every shard, in shard order; shards that are gone are left out.
pub async fn ask_all(links: &[ShardLink], command: Command) -> Vec<(usize, Answer)> {
    let mut answers = Vec::with_capacity(links.len());
    for (shard, link) in links.iter().enumerate() {
        if let Some(a) = link.ask(command.clone()).await {
            answers.push((shard, a));
        }
    }
    answers
}
