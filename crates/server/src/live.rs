//! Live events per run (job and step changes, log chunks) fanned out to SSE
//! subscribers. Nothing here is durable: the store is written first, then events
//! are published, so a subscriber that misses one catches up from the store.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;
use tokio::sync::broadcast;

#[derive(Default)]
pub struct LiveHub {
    runs: Mutex<HashMap<i64, broadcast::Sender<std::sync::Arc<str>>>>,
}

impl LiveHub {
    pub fn subscribe(&self, run_id: i64) -> broadcast::Receiver<std::sync::Arc<str>> {
        let mut m = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(run_id)
            .or_insert_with(|| broadcast::channel(1024).0)
            .subscribe()
    }

    /// Drops the run's channel when its last reader has left (a page closed):
    /// channels live only while someone listens, so readers of many runs (or
    /// of runs that never publish again) leave nothing behind.
    pub fn release(&self, run_id: i64) {
        let mut m = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(&run_id).is_some_and(|tx| tx.receiver_count() == 0) {
            m.remove(&run_id);
        }
    }

    /// Open channels (one per run with a live reader).
    pub fn channels(&self) -> usize {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn publish(&self, run_id: i64, event: Value) {
        let mut m = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = m.get(&run_id)
            && tx.send(event.to_string().into()).is_err()
        {
            // Nobody listens any more.
            m.remove(&run_id);
        }
    }
}
