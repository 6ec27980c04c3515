//! The writer thread: one dedicated thread owns a file's writing connection
//! and takes commands from a bounded channel; async callers send a command
//! and await its reply.
//!
//! Why one thread and a channel rather than `spawn_blocking` per call: SQLite
//! allows one writer at a time anyway, and each commit costs an `fsync`.
//! Queueing writes in-process is cheaper than contending for the file lock,
//! keeps `BEGIN IMMEDIATE` from ever waiting on ourselves, and gives one place
//! to batch: the thread takes every command that is waiting (up to a bound) and
//! hands them to its [`Commit`] as one group, which runs them in one
//! transaction and commits once (group commit), so throughput grows with
//! concurrency instead of being one `fsync` per call. The channel is bounded,
//! so a flood waits for room instead of growing memory.
//!
//! What a command is, how a group is committed and how each caller is answered
//! is the [`Commit`]'s business (the ledger's and the FIFO's differ); the
//! thread only gathers groups, and can tell its [`Commit`] when the file has
//! been quiet for a while.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use tokio::sync::mpsc::error::TrySendError;

/// What a [`Writer`] thread does with the commands it gathers. It owns the
/// writing connection (or whatever wraps it). Any `FnMut(Vec<C>)` is one.
pub trait Commit<C>: Send + 'static {
    /// Runs one group of commands (at least one, in the order they were
    /// sent) and answers each caller.
    fn commit(&mut self, group: Vec<C>);

    /// Asked before each wait for the next command: `Some(d)` to be called
    /// back ([`Commit::quiet`]) once no command came for `d`. `None` (the
    /// default) waits for the next command however long it takes.
    fn quiet_after(&self) -> Option<Duration> {
        None
    }

    /// No command came for the time [`Commit::quiet_after`] asked: time for
    /// housekeeping that should not slow a busy file down.
    fn quiet(&mut self) {}

    /// Every [`Writer`] handle is gone and the last group is committed; the
    /// thread ends after this returns.
    fn stopped(&mut self) {}
}

impl<C, F> Commit<C> for F
where
    F: FnMut(Vec<C>) + Send + 'static,
{
    fn commit(&mut self, group: Vec<C>) {
        self(group)
    }
}

/// The writer thread has ended: the file was closed, or its [`Commit`]
/// panicked. Nothing sent after that is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the writer thread has stopped")]
pub struct Stopped;

/// A handle to one writer thread. Cheap to clone; the thread ends once every
/// clone is dropped and what was sent before is committed.
pub struct Writer<C> {
    commands: mpsc::Sender<C>,
    name: Arc<str>,
}

impl<C> Clone for Writer<C> {
    fn clone(&self) -> Self {
        Writer {
            commands: self.commands.clone(),
            name: Arc::clone(&self.name),
        }
    }
}

impl<C> std::fmt::Debug for Writer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("thread", &self.name)
            .field("room", &self.commands.capacity())
            .finish()
    }
}

impl<C: Send + 'static> Writer<C> {
    /// Starts the thread `name`: at most `depth` commands wait in the channel
    /// (a sender beyond that waits for room), and at most `max_group` go to
    /// one [`Commit::commit`]. Both are at least 1.
    pub fn spawn(
        name: &str,
        depth: usize,
        max_group: usize,
        committer: impl Commit<C>,
    ) -> std::io::Result<Writer<C>> {
        let (commands, receiver) = mpsc::channel(depth.max(1));
        let max_group = max_group.max(1);
        std::thread::Builder::new().name(name.to_owned()).spawn({
            let name = name.to_owned();
            move || run(&name, committer, receiver, max_group)
        })?;
        Ok(Writer {
            commands,
            name: name.into(),
        })
    }

    /// Sends a command, waiting for room in the channel.
    pub async fn send(&self, command: C) -> Result<(), Stopped> {
        self.commands.send(command).await.map_err(|_| Stopped)
    }

    /// Sends a command only if there is room now: for callers that cannot
    /// wait (a `Drop`).
    pub fn try_send(&self, command: C) -> Result<(), TrySendError<C>> {
        self.commands.try_send(command)
    }

    /// Sends the command `make` builds around a reply channel and waits for
    /// the answer: the request/reply round trip most callers want.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> C) -> Result<T, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply)).await?;
        answer.await.map_err(|_| Stopped)
    }
}

fn run<C>(
    name: &str,
    mut committer: impl Commit<C>,
    mut commands: mpsc::Receiver<C>,
    max_group: usize,
) {
    let mut timer = QuietTimer::default();
    loop {
        let first = match committer.quiet_after() {
            Some(quiet) => match timer.recv_within(&mut commands, quiet) {
                Some(Ok(next)) => next,
                Some(Err(_quiet)) => {
                    committer.quiet();
                    continue;
                }
                None => commands.blocking_recv(),
            },
            None => commands.blocking_recv(),
        };
        let Some(first) = first else { break };
        let mut group = vec![first];
        while group.len() < max_group {
            match commands.try_recv() {
                Ok(command) => group.push(command),
                Err(_) => break,
            }
        }
        committer.commit(group);
    }
    committer.stopped();
    tracing::debug!(thread = name, "writer stopped");
}

/// The timer of the quiet wait: a small runtime of its own, made the first
/// time a [`Commit`] asks for it. Should it not be made (it cannot fail in
/// practice), the thread waits without a timer and the quiet call comes only
/// at the end.
#[derive(Default)]
struct QuietTimer {
    runtime: Option<tokio::runtime::Runtime>,
    failed: bool,
}

impl QuietTimer {
    /// `None`: no timer; `Some(Err)`: nothing came within `quiet`.
    fn recv_within<C>(
        &mut self,
        commands: &mut mpsc::Receiver<C>,
        quiet: Duration,
    ) -> Option<Result<Option<C>, tokio::time::error::Elapsed>> {
        if self.runtime.is_none() && !self.failed {
            match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(runtime) => self.runtime = Some(runtime),
                Err(error) => {
                    tracing::warn!(%error, "the writer thread has no timer; its quiet-time work waits for the end");
                    self.failed = true;
                }
            }
        }
        let runtime = self.runtime.as_ref()?;
        // The timer is made inside the runtime it needs.
        Some(runtime.block_on(async { tokio::time::timeout(quiet, commands.recv()).await }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Waits for the thread's report, failing with `what` after a deadline.
    fn next<T>(rx: &std_mpsc::Receiver<T>, what: &str) -> T {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {what} within 10 s"))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A committer that reports each group and, while `hold` is set, waits
    /// for a go before committing, so a test can line commands up.
    struct Recorder {
        groups: std_mpsc::Sender<Vec<u32>>,
        go: std_mpsc::Receiver<()>,
        hold: bool,
        stopped: std_mpsc::Sender<()>,
    }

    impl Commit<u32> for Recorder {
        fn commit(&mut self, group: Vec<u32>) {
            let _ = self.groups.send(group);
            if self.hold {
                let _ = self.go.recv();
            }
        }

        fn stopped(&mut self) {
            let _ = self.stopped.send(());
        }
    }

    struct Probe {
        groups: std_mpsc::Receiver<Vec<u32>>,
        go: std_mpsc::Sender<()>,
        stopped: std_mpsc::Receiver<()>,
    }

    fn recorder(hold: bool) -> (Recorder, Probe) {
        let (groups_tx, groups) = std_mpsc::channel();
        let (go, go_rx) = std_mpsc::channel();
        let (stopped_tx, stopped) = std_mpsc::channel();
        (
            Recorder {
                groups: groups_tx,
                go: go_rx,
                hold,
                stopped: stopped_tx,
            },
            Probe {
                groups,
                go,
                stopped,
            },
        )
    }

    #[test]
    fn what_waits_while_a_group_commits_is_the_next_group_in_order() {
        let (committer, probe) = recorder(true);
        let writer = Writer::spawn("test-writer", 64, 16, committer).unwrap();
        let rt = runtime();
        rt.block_on(writer.send(0)).unwrap();
        assert_eq!(next(&probe.groups, "first group"), vec![0]);
        // The thread is inside commit (held): these all wait in the channel.
        for n in 1..=40 {
            rt.block_on(writer.send(n)).unwrap();
        }
        for _ in 0..4 {
            probe.go.send(()).unwrap();
        }
        assert_eq!(
            next(&probe.groups, "second group"),
            (1..=16).collect::<Vec<_>>()
        );
        assert_eq!(
            next(&probe.groups, "third group"),
            (17..=32).collect::<Vec<_>>()
        );
        assert_eq!(
            next(&probe.groups, "fourth group"),
            (33..=40).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_channel_is_bounded_and_a_sender_waits_for_room() {
        let (committer, probe) = recorder(true);
        let writer = Writer::spawn("test-writer", 3, 100, committer).unwrap();
        writer.try_send(0).unwrap();
        assert_eq!(next(&probe.groups, "first group"), vec![0]);
        for n in 1..=3 {
            writer.try_send(n).unwrap();
        }
        assert!(
            matches!(writer.try_send(4), Err(TrySendError::Full(4))),
            "a fourth command waiting is refused, not queued"
        );
        // A sender finds no room and waits (polled by hand, so nothing runs
        // it behind the test's back) ...
        let mut waiting = std::pin::pin!(writer.send(4));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            waiting.as_mut().poll(&mut cx).is_pending(),
            "a full channel makes the sender wait"
        );
        probe.go.send(()).unwrap();
        assert_eq!(next(&probe.groups, "second group"), vec![1, 2, 3]);
        // ... and the thread took the group out of the channel before
        // committing it, so there is room now.
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
        probe.go.send(()).unwrap();
        assert_eq!(next(&probe.groups, "the command that waited"), vec![4]);
    }

    #[test]
    fn the_thread_commits_what_was_sent_then_stops_when_the_handles_are_gone() {
        let (committer, probe) = recorder(false);
        let writer = Writer::spawn("test-writer", 8, 8, committer).unwrap();
        let other = writer.clone();
        writer.try_send(1).unwrap();
        drop(writer);
        other.try_send(2).unwrap();
        drop(other);
        next(&probe.stopped, "stop");
        let committed: Vec<u32> = probe.groups.try_iter().flatten().collect();
        assert_eq!(committed, vec![1, 2]);
    }

    #[test]
    fn ask_returns_the_reply_and_a_stopped_thread_is_an_error() {
        let rt = runtime();
        let writer = Writer::spawn(
            "test-writer",
            8,
            8,
            |group: Vec<(u32, oneshot::Sender<u32>)>| {
                for (n, reply) in group {
                    if n == 0 {
                        panic!("the committer dies on 0");
                    }
                    let _ = reply.send(n * 2);
                }
            },
        )
        .unwrap();
        assert_eq!(rt.block_on(writer.ask(|reply| (21, reply))), Ok(42));
        assert_eq!(
            rt.block_on(writer.ask(|reply| (0, reply))),
            Err(Stopped),
            "the reply was dropped with the thread"
        );
        assert_eq!(
            rt.block_on(writer.ask(|reply| (1, reply))),
            Err(Stopped),
            "nothing is taken once the thread is gone"
        );
    }

    /// Counts quiet calls; asks for them only after a commit, as the FIFO's
    /// log truncation does.
    struct Quiet {
        dirty: bool,
        quiet: std_mpsc::Sender<()>,
        committed: std_mpsc::Sender<Vec<u32>>,
    }

    impl Commit<u32> for Quiet {
        fn commit(&mut self, group: Vec<u32>) {
            self.dirty = true;
            let _ = self.committed.send(group);
        }
        fn quiet_after(&self) -> Option<Duration> {
            self.dirty.then_some(Duration::from_millis(20))
        }
        fn quiet(&mut self) {
            self.dirty = false;
            let _ = self.quiet.send(());
        }
    }

    #[test]
    fn quiet_is_called_once_the_file_is_idle_and_only_when_asked() {
        let (quiet_tx, quiet) = std_mpsc::channel();
        let (committed_tx, committed) = std_mpsc::channel();
        let writer = Writer::spawn(
            "test-writer",
            8,
            8,
            Quiet {
                dirty: false,
                quiet: quiet_tx,
                committed: committed_tx,
            },
        )
        .unwrap();
        writer.try_send(1).unwrap();
        assert_eq!(next(&committed, "commit"), vec![1]);
        next(&quiet, "quiet call after the commit");
        writer.try_send(2).unwrap();
        assert_eq!(next(&committed, "commit after the quiet call"), vec![2]);
        next(&quiet, "quiet call after the second commit");
        // Not asked again until there is something new: the thread waits
        // without a timer, so when it ends (its committer, and with it the
        // sender, dropped) there were exactly two calls.
        drop(writer);
        assert_eq!(
            quiet.iter().count(),
            0,
            "no quiet call while nothing was written"
        );
    }
}
