//! Live events per run (job and step changes, log chunks) fanned out to SSE
//! subscribers. Nothing here is durable: the store is written first, then events
//! are published, so a subscriber that misses one catches up from the store.
//!
//! ## Across servers (PostgreSQL)
//! An agent uploads to one server; a browser may watch from another. Each
//! server relays what it publishes through the store's `announce_live`
//! (PostgreSQL `NOTIFY hangar_live`), bounded: events are gathered for
//! [`RELAY_EVERY`] and sent as a few payloads per tick (at most
//! [`MAX_NOTIFIES_PER_TICK`]), never one per line or per chunk. A log event
//! travels as a pointer (job, attempt, chunk): a server with a browser on that
//! run reads the chunk's text from the store, where it was written (masked)
//! before it was published; the others ignore it. What does not fit a tick is
//! sent next tick as a `resync` of the run (the page reloads from the store),
//! and a lost listening connection resyncs every watched run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_store::Store;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// How long events are gathered before they are relayed to other servers.
pub(crate) const RELAY_EVERY: Duration = Duration::from_millis(100);
/// `NOTIFY`s a server sends per tick at most (so at most 80 a second).
pub(crate) const MAX_NOTIFIES_PER_TICK: usize = 8;
/// Events kept for the next tick at most; past it a run is only resynced.
const MAX_PENDING: usize = 4096;
/// A non-log event bigger than this is relayed as a `resync` of its run.
const MAX_EVENT_BYTES: usize = 2048;

#[derive(Default)]
pub struct LiveHub {
    runs: Mutex<HashMap<i64, broadcast::Sender<Arc<str>>>>,
    /// Set when the store has other servers to relay to.
    relay: Mutex<Option<Outbox>>,
}

#[derive(Default)]
struct Outbox {
    /// This process's name in the payloads, so it skips its own.
    origin: String,
    events: Vec<(i64, Value)>,
    /// Runs whose events did not fit: relayed as a `resync`.
    resync: BTreeSet<i64>,
}

impl LiveHub {
    pub fn subscribe(&self, run_id: i64) -> broadcast::Receiver<Arc<str>> {
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
        if let Some(out) = self
            .relay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            if out.events.len() < MAX_PENDING {
                out.events.push((run_id, relayed(&event)));
            } else {
                out.resync.insert(run_id);
            }
        }
        self.publish_here(run_id, event);
    }

    /// To this server's readers only (an event another server relayed).
    fn publish_here(&self, run_id: i64, event: Value) {
        let mut m = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = m.get(&run_id)
            && tx.send(event.to_string().into()).is_err()
        {
            // Nobody listens any more.
            m.remove(&run_id);
        }
    }

    fn watched(&self, run_id: i64) -> bool {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&run_id)
    }

    fn watched_runs(&self) -> Vec<i64> {
        let m = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        m.keys().copied().collect()
    }

    /// This tick's events (the outbox emptied), or `None` when not relaying.
    fn take_pending(&self) -> Option<Outbox> {
        let mut g = self.relay.lock().unwrap_or_else(|e| e.into_inner());
        let out = g.as_mut()?;
        Some(Outbox {
            origin: out.origin.clone(),
            events: std::mem::take(&mut out.events),
            resync: std::mem::take(&mut out.resync),
        })
    }

    fn resync_later(&self, runs: impl IntoIterator<Item = i64>) {
        if let Some(out) = self
            .relay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            out.resync.extend(runs);
        }
    }
}

/// What travels to the other servers for `event`: a log chunk without its
/// text (they read it from the store), a large event as a resync.
fn relayed(event: &Value) -> Value {
    if event["type"] == "log" {
        json!({"type": "log", "job_id": event["job_id"], "attempt": event["attempt"],
               "chunk": event["chunk"], "first_line": event["first_line"], "step": event["step"]})
    } else if event.to_string().len() > MAX_EVENT_BYTES {
        json!({"type": "resync"})
    } else {
        event.clone()
    }
}

/// Packs one tick's events into at most `max` payloads of at most
/// `LIVE_PAYLOAD_MAX` bytes each: `{"o": origin, "r": [[run, [events…]], …]}`,
/// each run's events in their order (a busy run spans payloads). Runs that do
/// not fit are returned, to be resynced next tick.
pub(crate) fn pack(
    origin: &str,
    events: Vec<(i64, Value)>,
    resync: BTreeSet<i64>,
    max: usize,
) -> (Vec<String>, BTreeSet<i64>) {
    let mut by_run: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for (run, e) in events {
        by_run.entry(run).or_default().push(e);
    }
    for run in resync {
        by_run.insert(run, vec![json!({"type": "resync"})]);
    }
    let limit = hangar_store::LIVE_PAYLOAD_MAX;
    let head = json!({"o": origin, "r": []}).to_string().len();
    let mut payloads = Vec::new();
    let mut current: Vec<(i64, Vec<Value>)> = Vec::new();
    let mut size = head;
    let mut left = BTreeSet::new();
    let flush = |current: &mut Vec<(i64, Vec<Value>)>, payloads: &mut Vec<String>| {
        let r: Vec<Value> = current
            .drain(..)
            .map(|(run, evs)| json!([run, evs]))
            .collect();
        payloads.push(json!({"o": origin, "r": r}).to_string());
    };
    for (run, evs) in by_run {
        for e in evs {
            if payloads.len() >= max {
                left.insert(run);
                break;
            }
            let len = e.to_string().len() + 1;
            let same = current.last().is_some_and(|(r, _)| *r == run);
            let cost = if same {
                len
            } else {
                len + json!([run, []]).to_string().len() + 1
            };
            if size + cost > limit && !current.is_empty() {
                flush(&mut current, &mut payloads);
                size = head;
                if payloads.len() >= max {
                    left.insert(run);
                    break;
                }
            }
            match current.last_mut() {
                Some((r, v)) if *r == run => v.push(e),
                _ => current.push((run, vec![e])),
            }
            size += if current.last().is_some_and(|(_, v)| v.len() == 1) {
                len + json!([run, []]).to_string().len() + 1
            } else {
                len
            };
        }
    }
    if !current.is_empty() {
        flush(&mut current, &mut payloads);
    }
    (payloads, left)
}

/// Relays this server's events to the others on the database and theirs to
/// this server's readers. Nothing when the store has no other servers.
pub(crate) fn spawn_relay(app: Arc<crate::app::App>) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<String>>(1024);
    let heard_tx = tx.clone();
    let listening = app.store.listen_for_live(Box::new(move |p| {
        // Full (this server is behind): the lost payload becomes a resync of
        // every watched run, as after a lost connection.
        if heard_tx.try_send(p.map(str::to_string)).is_err() {
            let _ = heard_tx.try_send(None);
        }
    }))?;
    if !listening {
        return Ok(());
    }
    let origin = hangar_store::crypto::random_token()?;
    *app.live.relay.lock().unwrap_or_else(|e| e.into_inner()) = Some(Outbox {
        origin: origin.clone(),
        ..Default::default()
    });
    // Outbound: one pass per tick.
    {
        let app = Arc::downgrade(&app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELAY_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(app) = app.upgrade() else { return };
                let Some(out) = app.live.take_pending() else {
                    return;
                };
                if out.events.is_empty() && out.resync.is_empty() {
                    continue;
                }
                let (payloads, left) =
                    pack(&out.origin, out.events, out.resync, MAX_NOTIFIES_PER_TICK);
                app.live.resync_later(left);
                for p in payloads {
                    if let Err(e) = app.store.announce_live(&p) {
                        tracing::warn!("relaying live events to the other servers: {e:#}");
                    }
                }
            }
        });
    }
    // Inbound.
    let app = Arc::downgrade(&app);
    tokio::spawn(async move {
        while let Some(payload) = rx.recv().await {
            let Some(app) = app.upgrade() else { return };
            match payload {
                None => {
                    for run in app.live.watched_runs() {
                        app.live.publish_here(run, json!({"type": "resync"}));
                    }
                }
                Some(p) => deliver(&app, &origin, &p),
            }
        }
    });
    Ok(())
}

/// Hands another server's events to this server's readers of their runs.
fn deliver(app: &crate::app::App, origin: &str, payload: &str) {
    let Ok(v) = serde_json::from_str::<Value>(payload) else {
        return;
    };
    if v["o"] == origin {
        return;
    }
    for entry in v["r"].as_array().into_iter().flatten() {
        let Some(run) = entry[0].as_i64() else {
            continue;
        };
        if !app.live.watched(run) {
            continue;
        }
        for e in entry[1].as_array().into_iter().flatten() {
            let event = if e["type"] == "log" {
                match log_text(app.store.as_ref(), e) {
                    Some(text) => {
                        let mut full = e.clone();
                        full["text"] = Value::String(text);
                        full
                    }
                    None => json!({"type": "resync"}),
                }
            } else {
                e.clone()
            };
            app.live.publish_here(run, event);
        }
    }
}

/// The stored (masked) text of the chunk a relayed log event points at.
fn log_text(store: &dyn Store, e: &Value) -> Option<String> {
    let job = e["job_id"].as_i64()?;
    let chunk = e["chunk"].as_i64()?;
    let chunks = store.log_chunks(job, e["attempt"].as_i64(), chunk).ok()?;
    let c = chunks.into_iter().find(|c| c.idx == chunk)?;
    Some(String::from_utf8_lossy(&c.data).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_tick_is_a_few_bounded_payloads() {
        // 50 runs, 40 log chunks each, in one tick: far fewer NOTIFYs than
        // events, each under PostgreSQL's limit, and nothing lost unsaid.
        let mut events = Vec::new();
        for chunk in 0..40 {
            for run in 0..50 {
                let text = "x".repeat(4000);
                events.push((
                    run,
                    relayed(&json!({"type": "log", "job_id": run * 10, "attempt": 1,
                    "chunk": chunk, "first_line": chunk * 100, "text": text})),
                ));
            }
        }
        let (payloads, left) = pack("me", events, BTreeSet::new(), MAX_NOTIFIES_PER_TICK);
        assert!(
            payloads.len() <= MAX_NOTIFIES_PER_TICK,
            "{}",
            payloads.len()
        );
        assert!(
            payloads
                .iter()
                .all(|p| p.len() <= hangar_store::LIVE_PAYLOAD_MAX)
        );
        let mut runs: BTreeSet<i64> = left.clone();
        for p in &payloads {
            for entry in serde_json::from_str::<Value>(p).unwrap()["r"]
                .as_array()
                .unwrap()
            {
                runs.insert(entry[0].as_i64().unwrap());
            }
        }
        assert_eq!(runs.len(), 50, "every run is sent or resynced next tick");
        assert!(!left.is_empty(), "2000 chunks do not fit one tick");
        assert!(!payloads[0].contains("xxxx"), "log text never travels");
    }

    #[test]
    fn a_busy_run_spans_payloads_in_order_and_a_large_event_is_a_resync() {
        let events = (0..300)
            .map(|i| {
                (
                    7,
                    json!({"type": "log", "job_id": 1, "attempt": 1, "chunk": i, "first_line": i}),
                )
            })
            .collect();
        let (payloads, left) = pack("me", events, BTreeSet::new(), 8);
        assert!(left.is_empty());
        assert!(payloads.len() > 1);
        let chunks: Vec<i64> = payloads
            .iter()
            .flat_map(|p| {
                let v: Value = serde_json::from_str(p).unwrap();
                v["r"][0][1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["chunk"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(chunks, (0..300).collect::<Vec<_>>());
        assert!(
            payloads
                .iter()
                .all(|p| p.len() <= hangar_store::LIVE_PAYLOAD_MAX)
        );
        let big = relayed(&json!({"type": "job", "job": {"spec": "y".repeat(5000)}}));
        assert_eq!(big, json!({"type": "resync"}));
    }
}
