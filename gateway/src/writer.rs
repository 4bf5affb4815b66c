//! The single ledger writer: group commit.
//!
//! Handlers send [`Intent`]s through a bounded queue; the writer thread takes
//! everything that arrives within one block interval (or up to the block size),
//! applies it as one block — one endorsement, one atomic batch, **one flush** —
//! and only then answers each sender. Durability costs one flush per block, not
//! one per record. A full queue is refused at once (back-pressure). A block
//! refused because the file system is full (`store.full`: nothing of it was
//! written) is answered as such and the writer goes on, so writes resume once
//! space is freed; after any other storage failure the writer stops: nothing
//! more is acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::ledger::{Intent, Ledger, LedgerError, Outcome};

/// Block-cutting settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Longest wait after the first pending write before a block is cut.
    pub block_interval: Duration,
    /// Most transactions in one block.
    pub max_block_txs: usize,
    /// Submissions that may wait in the queue.
    pub queue: usize,
}

struct Submission {
    intents: Vec<Intent>,
    reply: oneshot::Sender<Result<Vec<Vec<Outcome>>, LedgerError>>,
}

/// Why a submission was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: try again shortly.
    #[error("the ledger is busy; retry shortly")]
    Busy,
    /// The writer has stopped (shutdown or storage failure).
    #[error("the ledger writer has stopped")]
    Stopped,
    /// The block failed to commit: nothing was written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Counters the writer keeps (for metrics and benchmarks).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Blocks cut.
    pub blocks: AtomicU64,
    /// Transactions written.
    pub txs: AtomicU64,
    /// Blocks refused because the file system was full (`store.full`).
    pub full: AtomicU64,
}

/// A handle to the writer thread; cloning shares the queue.
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Submission>,
    failed: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    /// Counters.
    pub stats: Arc<WriterStats>,
}

/// Joins the writer thread on shutdown.
pub struct WriterThread(Option<JoinHandle<()>>);

impl WriterThread {
    /// Waits until every queued submission is applied and the thread exits.
    /// Call after every [`Writer`] handle is dropped.
    pub fn join(mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

impl Writer {
    /// Starts the writer thread for `ledger`.
    pub fn spawn(
        ledger: Arc<Ledger>,
        clock: Arc<dyn Clock>,
        cfg: WriterConfig,
    ) -> (Writer, WriterThread) {
        let (tx, rx) = sync_channel(cfg.queue);
        let failed = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WriterStats::default());
        let closing = Arc::new(AtomicBool::new(false));
        let (f, s, c) = (failed.clone(), stats.clone(), closing.clone());
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || run(ledger, clock, cfg, rx, f, s, c))
            .expect("spawn the ledger writer thread");
        (
            Writer {
                tx,
                failed,
                closing,
                stats,
            },
            WriterThread(Some(handle)),
        )
    }

    /// True once the writer has stopped after a failure.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stops taking submissions; the thread applies what is queued, then exits
    /// (graceful shutdown does not wait for every handle to be dropped).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Submits intents and waits until they are durable in a certified block.
    pub async fn submit(&self, intents: Vec<Intent>) -> Result<Vec<Vec<Outcome>>, SubmitError> {
        if self.failed() || self.closing.load(Ordering::SeqCst) {
            return Err(SubmitError::Stopped);
        }
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Submission { intents, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(SubmitError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(SubmitError::Stopped),
        }
        match rx.await {
            Ok(r) => r.map_err(SubmitError::from),
            Err(_) => Err(SubmitError::Stopped),
        }
    }
}

fn run(
    ledger: Arc<Ledger>,
    clock: Arc<dyn Clock>,
    cfg: WriterConfig,
    rx: Receiver<Submission>,
    failed: Arc<AtomicBool>,
    stats: Arc<WriterStats>,
    closing: Arc<AtomicBool>,
) {
    loop {
        let first = match rx.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(s) => s,
            Err(RecvTimeoutError::Disconnected) => return,
            // Closing and nothing queued: done.
            Err(RecvTimeoutError::Timeout) if closing.load(Ordering::SeqCst) => return,
            Err(RecvTimeoutError::Timeout) => continue,
        };
        let deadline = Instant::now() + cfg.block_interval;
        let mut count: usize = first.intents.iter().map(intent_txs).sum();
        let mut pending = vec![first];
        while count < cfg.max_block_txs {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(s) => {
                    count += s.intents.iter().map(intent_txs).sum::<usize>();
                    pending.push(s);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let sizes: Vec<usize> = pending.iter().map(|s| s.intents.len()).collect();
        let mut replies = Vec::with_capacity(pending.len());
        let mut all = Vec::with_capacity(count);
        for s in pending {
            all.extend(s.intents);
            replies.push(s.reply);
        }
        let full = &stats.full;
        match ledger.apply(all, clock.now_ms()) {
            Ok(outcomes) => {
                let written = outcomes
                    .iter()
                    .flatten()
                    .filter(|o| matches!(o, Outcome::Written { .. }))
                    .count();
                if written > 0 {
                    stats.blocks.fetch_add(1, Ordering::Relaxed);
                    stats.txs.fetch_add(written as u64, Ordering::Relaxed);
                }
                let mut it = outcomes.into_iter();
                for (reply, n) in replies.into_iter().zip(sizes) {
                    let part: Vec<Vec<Outcome>> = it.by_ref().take(n).collect();
                    let _ = reply.send(Ok(part));
                }
            }
            Err(e) if e.code() == "store.full" => {
                // Nothing of this block was written: refuse it and keep
                // going, so that writes resume once space is freed.
                tracing::error!(code = "store.full", error = %e, "ledger write refused: the data directory's file system is full");
                full.fetch_add(1, Ordering::Relaxed);
                for reply in replies {
                    let _ = reply.send(Err(e.for_waiter()));
                }
            }
            Err(e) => {
                // Fail-stop: nothing of this block is acknowledged, nothing more is accepted.
                tracing::error!(error = %e, "ledger write failed; the writer stops");
                failed.store(true, Ordering::Relaxed);
                for reply in replies {
                    let _ = reply.send(Err(e.for_waiter()));
                }
                return;
            }
        }
    }
}

fn intent_txs(i: &Intent) -> usize {
    match i {
        Intent::Publish(_) | Intent::Revoke { .. } | Intent::Log(_) | Intent::Record { .. } => 1,
        Intent::Import { members, .. } => 1 + members.len(),
    }
}
