//! The audit trail: the queue that group-commits authentications, and the walk that
//! verifies the chain.
//!
//! State changes write their audit event in the same transaction as the change (the
//! store does that). Authentications (`token.exchanged`, `token.refreshed`,
//! `auth.failed`) are too frequent for a transaction each, so they go through an
//! [`AuditQueue`] and are group-committed: the writer takes what is queued, lets more
//! gather for 20 ms, appends all of it to the chain in one transaction, and
//! repeats, so an event is normally committed within tens of milliseconds and always
//! within a second of a healthy database. Nothing is
//! dropped: the queue is bounded and a full queue makes the request wait (backpressure)
//! rather than discard, and a failed commit is retried. A crash loses at most the events
//! still queued — at most about a second's worth.

use crate::service::error::{Error, Result};
use crate::service::state::AppState;
use latchkey_core::audit::{AuditContext, AuditEvent, ChainLink, ChainVerifier, Verdict, unhex};
use latchkey_core::store::{AuditHead, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

mod exchanges;

pub use exchanges::Exchange;
use exchanges::{Recorded, fold};

const QUEUE: usize = 65_536;
const BATCH: usize = 5_000;

enum Item {
    Recorded(Recorded),
    Flush(oneshot::Sender<()>),
}

/// Group commit of authentication events.
#[derive(Clone)]
pub struct AuditQueue {
    sender: Option<mpsc::Sender<Item>>,
}

impl AuditQueue {
    /// Starts the writer; `enabled: false` records nothing (for measuring the cost).
    pub fn start(store: Arc<dyn Store>, enabled: bool) -> Self {
        if !enabled {
            return Self { sender: None };
        }
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write(store, receiver));
        Self {
            sender: Some(sender),
        }
    }

    /// Queues an event; waits only when the queue is full.
    pub async fn record(&self, context: AuditContext, event: AuditEvent) {
        self.queue(Recorded::Event(Box::new((context, event))))
            .await;
    }

    /// Queues a client-credentials exchange, recorded with alike ones of the same
    /// commit as one `token.exchanged` event; waits only when the queue is full.
    pub async fn exchanged(&self, exchange: Exchange) {
        self.queue(Recorded::Exchange(Box::new(exchange))).await;
    }

    async fn queue(&self, recorded: Recorded) {
        if let Some(sender) = &self.sender
            && sender.send(Item::Recorded(recorded)).await.is_err()
        {
            tracing::error!("the audit writer has stopped; an authentication event is lost");
        }
    }

    /// Events waiting to be committed.
    pub fn depth(&self) -> usize {
        self.sender
            .as_ref()
            .map_or(0, |sender| sender.max_capacity() - sender.capacity())
    }

    /// Returns once everything queued before the call is committed.
    pub async fn flush(&self) {
        if let Some(sender) = &self.sender {
            let (done, wait) = oneshot::channel();
            if sender.send(Item::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
    }
}

/// How long the writer lets events gather after the first one before it commits them.
/// It sleeps meanwhile rather than waking for each event: fewer, larger transactions
/// and fewer wake-ups cost far less per event than committing as events trickle in.
const LINGER: Duration = Duration::from_millis(20);

async fn write(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<Item>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        let mut lingered = false;
        while let Some(item) = next.take() {
            match item {
                Item::Recorded(recorded) => batch.push(recorded),
                Item::Flush(done) => waiting.push(done),
            }
            if batch.len() >= BATCH {
                break;
            }
            next = receiver.try_recv().ok();
            // Queue drained: wait once for more unless somebody waits for a flush.
            if next.is_none() && !lingered && waiting.is_empty() {
                lingered = true;
                tokio::time::sleep(LINGER).await;
                next = receiver.try_recv().ok();
            }
        }
        let events = fold(batch.drain(..));
        let mut delay = Duration::from_millis(50);
        while let Err(error) = store.append_audit(&events).await {
            tracing::warn!(
                ?error,
                events = events.len(),
                "committing audit events failed; retrying"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Events read per page of the walk.
const VERIFY_PAGE: u32 = 1_000;

/// Walks the whole chain (docs/API.md, "Audit MACs"): every link and every event's MAC.
/// The MACs can only be checked here: their key is derived from the master key, which
/// the server holds and the CLI does not. The walk reads the stored head before and
/// after it, so events appended meanwhile are not mistaken for tampering (see
/// [`ChainVerifier`]). It reads the chain a page at a time and keeps only the previous
/// link, so a long chain costs time, not memory. Returns the head it started from and
/// the verdict.
pub async fn verify_chain(state: &AppState) -> Result<(AuditHead, Verdict)> {
    let store = state.store();
    let head = store.audit_head().await?;
    let head_hash =
        unhex(&head.hash).ok_or_else(|| Error::internal("the stored audit head is not hex"))?;
    let mut verifier =
        ChainVerifier::with_macs(head.seq, head_hash, state.audit_key(), head.macs_from);
    let mut after = 0;
    while !verifier.is_broken() {
        let records = store.audit_chain(after, VERIFY_PAGE).await?;
        let Some(last) = records.last() else {
            break;
        };
        after = last.seq;
        for record in records {
            let link = ChainLink::from_record(record)
                .ok_or_else(|| Error::internal("an audit record's hash is not hex"))?;
            verifier.check(&link);
        }
    }
    let head_after = store.audit_head().await?;
    let verdict = verifier.finish(head_after.seq);
    if let Some(broken) = &verdict.first_broken {
        tracing::warn!(
            seq = broken.seq,
            reason = ?broken.reason,
            "audit verification found a broken chain"
        );
    }
    Ok((head, verdict))
}
