//! The FIFO file behind the embedded backend and the spool, driven from async
//! code by one dedicated thread (a [`paysettle_sqlite::Writer`]).
//!
//! Why a thread and a channel rather than `spawn_blocking` per call: the
//! receiver publishes from many tasks at once, and each SQLite commit costs an
//! `fsync`. The thread takes every operation that is waiting, runs them all in
//! one transaction and commits once (group commit), so throughput grows with
//! concurrency instead of being one `fsync` per message. The channel is
//! bounded: a flood of publishes waits for room instead of growing memory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use paysettle_sqlite::{Commit, TrySendError, Writer};
use tokio::sync::{oneshot, watch};

use crate::QueueError;
use crate::fifo::{Fifo, FifoError, FifoMessage, FifoTx, Lease, LeasedMessage, QueuePolicy};

/// Most operations one transaction takes, so one huge burst does not hold
/// every reply until it is all written.
const MAX_BATCH: usize = 1024;

/// How many operations may wait for the thread; a publisher beyond that
/// waits for room.
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

/// After messages were removed, how long the file must be quiet before the
/// write-ahead log is emptied (see [`Fifo::truncate_log`]): the old copies of
/// what `secure_delete` overwrote, a card token say, go with it.
const TRUNCATE_WHEN_QUIET: Duration = Duration::from_millis(500);
/// ... and how long at most under steady load.
const TRUNCATE_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

enum Op {
    Declare(String, QueuePolicy),
    Push(String, FifoMessage),
    Lease(String, usize, Duration),
    Ack(Lease),
    Release(Lease),
    DeadLetter(Lease, String),
    Depth(String),
}

enum Out {
    Unit,
    Seq,
    Leased(Vec<LeasedMessage>),
    Done(bool),
    Depth(u64),
}

struct Cmd {
    op: Op,
    reply: Option<oneshot::Sender<Result<Out, QueueError>>>,
}

/// A cloneable handle to one FIFO file's thread.
#[derive(Debug, Clone)]
pub(crate) struct FifoHandle {
    tx: Writer<Cmd>,
    changes: watch::Receiver<u64>,
    writable: Arc<AtomicBool>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

impl FifoHandle {
    /// Opens the file and starts its thread. The thread ends when the last
    /// handle is dropped; everything it committed is already on disk.
    pub(crate) async fn open(path: &Path) -> Result<Self, QueueError> {
        let path = path.to_owned();
        let fifo = tokio::task::spawn_blocking(move || Fifo::open(&path))
            .await
            .map_err(|_| QueueError::Closed)??;
        let (changes_tx, changes) = watch::channel(0_u64);
        let writable = Arc::new(AtomicBool::new(true));
        let thread = FifoThread {
            fifo,
            changes: changes_tx,
            writable: writable.clone(),
            removed: false,
            truncated_at: Instant::now(),
        };
        let tx = Writer::spawn("paysettle-fifo", QUEUE_DEPTH, MAX_BATCH, thread)
            .map_err(|e| QueueError::InvalidConfig(format!("cannot start the fifo thread: {e}")))?;
        Ok(Self {
            tx,
            changes,
            writable,
        })
    }

    async fn call(&self, op: Op) -> Result<Out, QueueError> {
        self.tx
            .ask(|reply| Cmd {
                op,
                reply: Some(reply),
            })
            .await
            .map_err(|_| QueueError::Closed)?
    }

    /// Whether the last commit succeeded: what `/readyz` asks of the spool.
    pub(crate) fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    /// A receiver that changes whenever messages became available (pushed or released).
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    pub(crate) async fn declare(&self, queue: &str, policy: QueuePolicy) -> Result<(), QueueError> {
        self.call(Op::Declare(queue.to_owned(), policy))
            .await
            .map(|_| ())
    }

    pub(crate) async fn push(&self, queue: &str, message: FifoMessage) -> Result<(), QueueError> {
        self.call(Op::Push(queue.to_owned(), message))
            .await
            .map(|_| ())
    }

    pub(crate) async fn lease(
        &self,
        queue: &str,
        max: usize,
        lease_for: Duration,
    ) -> Result<Vec<LeasedMessage>, QueueError> {
        match self
            .call(Op::Lease(queue.to_owned(), max, lease_for))
            .await?
        {
            Out::Leased(v) => Ok(v),
            _ => Ok(Vec::new()),
        }
    }

    async fn done(&self, op: Op) -> Result<bool, QueueError> {
        match self.call(op).await? {
            Out::Done(done) => Ok(done),
            _ => Ok(false),
        }
    }

    pub(crate) async fn ack(&self, lease: Lease) -> Result<bool, QueueError> {
        self.done(Op::Ack(lease)).await
    }

    /// Acks `acks` and releases `releases`, sending every operation before
    /// waiting for any, so they share one commit. Returns how many were acked.
    pub(crate) async fn settle_many(
        &self,
        acks: &[Lease],
        releases: &[Lease],
    ) -> Result<usize, QueueError> {
        let ops = acks
            .iter()
            .map(|l| Op::Ack(*l))
            .chain(releases.iter().map(|l| Op::Release(*l)));
        let mut replies = Vec::with_capacity(acks.len() + releases.len());
        for op in ops {
            let (reply, rx) = oneshot::channel();
            self.tx
                .send(Cmd {
                    op,
                    reply: Some(reply),
                })
                .await
                .map_err(|_| QueueError::Closed)?;
            replies.push(rx);
        }
        let mut acked = 0;
        for (i, rx) in replies.into_iter().enumerate() {
            let out = rx.await.map_err(|_| QueueError::Closed)??;
            if i < acks.len() && matches!(out, Out::Done(true)) {
                acked += 1;
            }
        }
        Ok(acked)
    }

    pub(crate) async fn release(&self, lease: Lease) -> Result<bool, QueueError> {
        self.done(Op::Release(lease)).await
    }

    /// Releases without waiting for the answer: for `Drop`, which cannot await.
    /// Should it not be committed (the thread's channel is full, or the
    /// thread is gone), the lease still expires and the message comes back.
    pub(crate) fn release_detached(&self, lease: Lease) {
        let release = Cmd {
            op: Op::Release(lease),
            reply: None,
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(release) {
            tracing::debug!(
                seq = lease.seq(),
                "the fifo thread is busy; the dropped delivery comes back when its lease expires"
            );
        }
    }

    pub(crate) async fn dead_letter(&self, lease: Lease, reason: &str) -> Result<bool, QueueError> {
        self.done(Op::DeadLetter(lease, reason.to_owned())).await
    }

    pub(crate) async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        match self.call(Op::Depth(queue.to_owned())).await? {
            Out::Depth(n) => Ok(n),
            _ => Ok(0),
        }
    }
}

/// The thread's side: the FIFO file and what the handles watch.
struct FifoThread {
    fifo: Fifo,
    changes: watch::Sender<u64>,
    writable: Arc<AtomicBool>,
    /// Messages were removed since the log was last emptied.
    removed: bool,
    truncated_at: Instant,
}

impl Commit<Cmd> for FifoThread {
    fn commit(&mut self, mut batch: Vec<Cmd>) {
        let adds_work = batch
            .iter()
            .any(|c| matches!(c.op, Op::Push(..) | Op::Release(_)));
        let removes = batch
            .iter()
            .any(|c| matches!(c.op, Op::Ack(_) | Op::DeadLetter(..)));
        let results = apply_batch(&mut self.fifo, &mut batch);
        let committed = results.is_ok();
        self.writable.store(committed, Ordering::Relaxed);
        match results {
            Ok(outs) => {
                for (cmd, out) in batch.drain(..).zip(outs) {
                    if let Some(reply) = cmd.reply {
                        let _ = reply.send(out);
                    }
                }
                if adds_work {
                    self.changes.send_modify(|n| *n = n.wrapping_add(1));
                }
                self.removed |= removes;
                if self.removed && self.truncated_at.elapsed() >= TRUNCATE_AT_LEAST_EVERY {
                    self.quiet();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, operations = batch.len(), "fifo transaction failed");
                let e = Arc::new(e);
                for cmd in batch.drain(..) {
                    if let Some(reply) = cmd.reply {
                        let _ = reply.send(Err(QueueError::Storage(e.clone())));
                    }
                }
            }
        }
    }

    /// After messages were removed, the log is emptied once the file is quiet.
    fn quiet_after(&self) -> Option<Duration> {
        self.removed.then_some(TRUNCATE_WHEN_QUIET)
    }

    fn quiet(&mut self) {
        truncate_log(&mut self.fifo);
        self.removed = false;
        self.truncated_at = Instant::now();
    }

    fn stopped(&mut self) {
        if self.removed {
            truncate_log(&mut self.fifo);
        }
    }
}

/// Empties the write-ahead log; a failure only postpones it.
fn truncate_log(fifo: &mut Fifo) {
    match fifo.truncate_log() {
        Ok(true) => {}
        Ok(false) => tracing::debug!("the fifo's log is in use; emptied later"),
        Err(e) => tracing::warn!(error = %e, "cannot empty the fifo's log"),
    }
}

/// Runs every operation in one transaction. A storage failure rolls the whole
/// batch back (and fails every operation in it); a logical failure (an
/// unknown queue, say) changes nothing and fails only its own operation.
fn apply_batch(
    fifo: &mut Fifo,
    batch: &mut [Cmd],
) -> Result<Vec<Result<Out, QueueError>>, FifoError> {
    let tx = fifo.transaction()?;
    let now = SystemTime::now();
    let mut outs = Vec::with_capacity(batch.len());
    for cmd in batch.iter() {
        match apply(&tx, &cmd.op, now) {
            Ok(out) => outs.push(Ok(out)),
            Err(e @ FifoError::Sqlite(_)) => return Err(e),
            Err(e) => outs.push(Err(QueueError::from(e))),
        }
    }
    tx.commit()?;
    Ok(outs)
}

fn apply(tx: &FifoTx<'_>, op: &Op, now: SystemTime) -> Result<Out, FifoError> {
    Ok(match op {
        Op::Declare(queue, policy) => {
            tx.declare_queue(queue, policy)?;
            Out::Unit
        }
        Op::Push(queue, message) => {
            tx.push(queue, message, now)?;
            Out::Seq
        }
        Op::Lease(queue, max, lease_for) => Out::Leased(tx.lease(queue, *max, *lease_for, now)?),
        Op::Ack(lease) => Out::Done(tx.ack(*lease)?),
        Op::Release(lease) => Out::Done(tx.release(*lease)?),
        Op::DeadLetter(lease, reason) => Out::Done(tx.dead_letter(*lease, reason)?),
        Op::Depth(queue) => Out::Depth(tx.depth(queue)?),
    })
}
