//! Watching production: the environment's alert rules, evaluated continuously
//! by its controller from the router's own counters and the supervisor's view
//! of the instances, and the environment's Prometheus listener.
//!
//! Each rule is evaluated per service as Prometheus evaluates an alerting
//! rule: when its condition holds the alert is *pending*; held for `for:` it
//! is *firing* (notified); when the condition stops holding it is *resolved*
//! (notified if the firing was). Request counts are differences of the
//! router's monotonic counters over the rule's trailing `window`, so a
//! window's error rate is the same number `hangar status` and `/metrics` give.
//!
//! States are kept in `alerts.json` beside the environment's state (written
//! atomically), so a restarted controller neither re-fires an alert it
//! already announced nor forgets to resolve it. Silences are in
//! `alert-silences.json`, written by `hangar alerts silence` without a
//! running controller: a silenced rule is still evaluated and listed, but
//! notifies nothing; one still firing when its silence ends is announced then.
//!
//! Notifications go to the `webhook:` of `alerts:` as JSON, in order (one
//! sender per controller, so a resolve never overtakes its firing), signed
//! as the server's webhook channel signs (`X-Hangar-Signature-256`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hangar_project::{AlertKind, AlertRule, Alerts, Limit, Severity};
use hangar_router::Snapshot;
use hangar_router::daemon::Request;
use hangar_router::metrics::{InstanceGauge, MetricsServer};
use serde::{Deserialize, Serialize};

use crate::controller::Controller;
use crate::state::write_atomic;
use crate::supervisor::{InstanceStatus, Phase, now_unix_ms};

/// The states' file in the environment's directory.
pub const STATES: &str = "alerts.json";
/// The silences' file in the environment's directory.
pub const SILENCES: &str = "alert-silences.json";
/// Every notice (firing, resolved), one JSON line each, append-only: what
/// `hangar serve` relays through its notification channels for a project it
/// watches (the controller does not know whether a server watches it).
pub const EVENTS: &str = "alert-events.jsonl";

/// Appends one notice to the environment's alert event log.
pub fn append_event(env_dir: &Path, notice: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_vec(notice)?;
    line.push(b'\n');
    // One write of a whole line to a file opened for appending: a reader
    // never sees half of it mixed with another.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env_dir.join(EVENTS))?
        .write_all(&line)
}

/// The notices appended after byte `offset` (whole lines only), and the
/// offset to read from next time. A log shorter than `offset` (replaced)
/// is read from its start.
pub fn events_since(env_dir: &Path, offset: u64) -> (Vec<serde_json::Value>, u64) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(env_dir.join(EVENTS)) else {
        return (Vec::new(), 0);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let offset = if len < offset { 0 } else { offset };
    let mut bytes = Vec::new();
    // At most 1 MiB a call: a huge log is relayed over several calls.
    if f.seek(SeekFrom::Start(offset)).is_err() || f.take(1 << 20).read_to_end(&mut bytes).is_err()
    {
        return (Vec::new(), offset);
    }
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let events = bytes[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    (events, offset + complete as u64)
}

/// The size of the alert event log now (where a new reader starts).
pub fn events_end(env_dir: &Path) -> u64 {
    std::fs::metadata(env_dir.join(EVENTS)).map_or(0, |m| m.len())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertPhase {
    /// The condition does not hold.
    Inactive,
    /// The condition holds, not yet for `for:`.
    Pending,
    Firing,
    /// Was firing; the condition stopped holding.
    Resolved,
}

/// One rule's alert for one service, as `hangar alerts` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub rule: String,
    pub service: String,
    pub kind: String,
    pub severity: Severity,
    pub phase: AlertPhase,
    /// When the condition started to hold (unix ms), while pending or firing.
    pub since_ms: Option<u64>,
    pub fired_ms: Option<u64>,
    pub resolved_ms: Option<u64>,
    /// The last value observed, in the threshold's unit (`43.1%`, `310 ms`, `2`).
    pub value: String,
    pub threshold: String,
    /// The firing was announced (a resolve is announced only then).
    #[serde(default)]
    pub notified: bool,
}

impl AlertRecord {
    fn key(&self) -> String {
        format!("{}/{}", self.rule, self.service)
    }
}

/// The alerts of an environment as last evaluated, and its silences (rule → until, unix ms).
/// The scheduled backups' alerts that fire are listed with the rules'.
pub fn list(env_dir: &Path) -> (Vec<AlertRecord>, BTreeMap<String, u64>) {
    let mut states = load_states(env_dir);
    states.extend(crate::recovery::firing_alerts(env_dir));
    (states, load_silences(env_dir))
}

fn load_states(env_dir: &Path) -> Vec<AlertRecord> {
    std::fs::read(env_dir.join(STATES))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn load_silences(env_dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read(env_dir.join(SILENCES))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Silences `rule` for `duration` from now (a zero duration lifts the silence).
/// Returns when it ends (unix ms).
pub fn silence(env_dir: &Path, rule: &str, duration: Duration) -> std::io::Result<u64> {
    std::fs::create_dir_all(env_dir)?;
    let mut silences = load_silences(env_dir);
    let now = now_unix_ms();
    silences.retain(|_, until| *until > now);
    let until = now.saturating_add(duration.as_millis().min(u64::MAX as u128) as u64);
    if duration.is_zero() {
        silences.remove(rule);
    } else {
        silences.insert(rule.to_string(), until);
    }
    write_atomic(
        &env_dir.join(SILENCES),
        &serde_json::to_vec_pretty(&silences)?,
    )?;
    Ok(until)
}

/// What the evaluator reads of one service at one moment.
pub(crate) struct Observed {
    pub service: String,
    /// Counters of every version the router measured for this service.
    pub versions: Vec<(String, Snapshot)>,
    pub instances: Vec<InstanceStatus>,
}

/// One service's past observations, for windows.
#[derive(Default)]
struct Past {
    samples: VecDeque<(Instant, HashMap<String, Snapshot>, u64)>,
}

/// The counters of the last `window`: (requests window, restarts in it), or
/// `None` while the history is shorter than the window (a rule on traffic is
/// not judged on a fraction of its window).
fn window(past: &Past, now: &Observed, window: Duration) -> Option<(Snapshot, u64)> {
    let newest = past.samples.back()?;
    let cutoff = newest.0.checked_sub(window)?;
    let base = past.samples.iter().rev().find(|(t, _, _)| *t <= cutoff)?;
    let mut total = Snapshot::default();
    for (version, snap) in &now.versions {
        match base.1.get(version) {
            Some(before) => total.add(&snap.since(before)),
            None => total.add(snap),
        }
    }
    Some((total, newest.2.saturating_sub(base.2)))
}

/// Whether a rule's condition holds, and the value observed.
fn condition(
    rule: &AlertRule,
    limit: Limit,
    obs: &Observed,
    win: Option<&(Snapshot, u64)>,
) -> Option<(bool, String)> {
    let count_of = |phases: &[Phase]| {
        obs.instances
            .iter()
            .filter(|i| phases.contains(&i.phase))
            .count() as u64
    };
    let at_least = |n: u64| match limit {
        Limit::Count(c) => n >= c.max(1),
        _ => false,
    };
    match rule.kind.value {
        AlertKind::ErrorRate => {
            let (w, _) = win?;
            let s = w.summary();
            let holds = matches!(limit, Limit::Rate(r) if s.requests + w.connect_errors > 0 && s.error_rate > r);
            Some((holds, format!("{:.1}%", s.error_rate * 100.0)))
        }
        AlertKind::P95Latency | AlertKind::P99Latency => {
            let (w, _) = win?;
            let q = if rule.kind.value == AlertKind::P95Latency {
                0.95
            } else {
                0.99
            };
            let latency = w.quantile(q);
            let holds = matches!(limit, Limit::Latency(l) if w.requests > 0 && latency > l);
            Some((holds, format!("{} ms", latency.as_millis())))
        }
        AlertKind::NoTraffic => {
            let (w, _) = win?;
            let holds = matches!(limit, Limit::Count(c) if w.requests < c.max(1));
            Some((holds, format!("{} requests", w.requests)))
        }
        AlertKind::RestartLoop => {
            let (_, restarts) = win?;
            Some((at_least(*restarts), format!("{restarts} restarts")))
        }
        AlertKind::InstancesDown => {
            let n = count_of(&[Phase::Backoff, Phase::Failed]);
            Some((at_least(n), format!("{n} down")))
        }
        AlertKind::HealthFailing => {
            let n = count_of(&[Phase::Unhealthy]);
            Some((at_least(n), format!("{n} unhealthy")))
        }
    }
}

fn threshold_text(rule: &AlertRule, limit: Limit) -> String {
    match limit {
        Limit::Rate(r) => format!("{}%", r * 100.0),
        Limit::Latency(d) => format!("{} ms", d.as_millis()),
        Limit::Count(c) => match rule.kind.value {
            AlertKind::NoTraffic => format!("fewer than {} requests", c.max(1)),
            _ => c.max(1).to_string(),
        },
    }
}

/// A notification to send.
#[derive(Debug, Clone, Serialize)]
struct Notice {
    status: &'static str,
    env: String,
    service: String,
    rule: String,
    kind: String,
    severity: Severity,
    value: String,
    threshold: String,
    #[serde(rename = "for")]
    for_: String,
    summary: String,
    started_at_ms: Option<u64>,
    resolved_at_ms: Option<u64>,
}

/// The evaluator's memory between ticks.
struct Evaluator {
    env: String,
    dir: PathBuf,
    records: BTreeMap<String, AlertRecord>,
    past: HashMap<String, Past>,
    outbox: Outbox,
    /// A value changed since the last save (written at most every [`VALUES_EVERY`]).
    values_changed: bool,
    last_save: Instant,
}

/// How often values alone (no state changed) are written for `hangar alerts`.
const VALUES_EVERY: Duration = Duration::from_secs(5);

/// Notices for the sender: (URL, HMAC key, notice).
type Outbox = tokio::sync::mpsc::UnboundedSender<(String, Option<String>, Notice)>;

impl Evaluator {
    /// One evaluation of every rule at `now_ms`; returns whether a record changed.
    fn evaluate(&mut self, alerts: &Alerts, observed: &[Observed], now_ms: u64) -> bool {
        let silences = load_silences(&self.dir);
        let mut changed = false;
        for obs in observed {
            let past = self.past.entry(obs.service.clone()).or_default();
            let restarts: u64 = obs.instances.iter().map(|i| i.restarts as u64).sum();
            past.samples.push_back((
                Instant::now(),
                obs.versions.iter().cloned().collect(),
                restarts,
            ));
            let longest = alerts
                .rules
                .values()
                .map(|r| r.value.window.0)
                .max()
                .unwrap_or_default()
                + alerts.interval.0 * 2;
            while past
                .samples
                .front()
                .is_some_and(|(t, _, _)| t.elapsed() > longest)
                && past.samples.len() > 1
            {
                past.samples.pop_front();
            }
        }
        for (name, rule) in &alerts.rules {
            let rule = &rule.value;
            let Ok(limit) = rule.limit() else { continue };
            for obs in observed {
                if rule
                    .service
                    .as_ref()
                    .is_some_and(|s| s.value != obs.service)
                {
                    continue;
                }
                let Some(past) = self.past.get(&obs.service) else {
                    continue;
                };
                let win = window(past, obs, rule.window.0);
                let judged = condition(rule, limit, obs, win.as_ref());
                let key = format!("{name}/{}", obs.service);
                let silenced = silences.get(name).is_some_and(|until| *until > now_ms);
                let new = !self.records.contains_key(&key);
                let rec = self.records.entry(key).or_insert_with(|| AlertRecord {
                    rule: name.clone(),
                    service: obs.service.clone(),
                    kind: rule.kind.value.name().to_string(),
                    severity: rule.severity,
                    phase: AlertPhase::Inactive,
                    since_ms: None,
                    fired_ms: None,
                    resolved_ms: None,
                    value: String::new(),
                    threshold: String::new(),
                    notified: false,
                });
                let before = rec.clone();
                let Some((holds, value)) = judged else {
                    // Less history than the window (the controller just
                    // started): nothing is decided, and a firing alert kept
                    // from before a restart stays firing, unannounced again.
                    if rec.phase == AlertPhase::Inactive && rec.value.is_empty() {
                        rec.value = "collecting".into();
                        rec.threshold = threshold_text(rule, limit);
                    }
                    changed |= new;
                    continue;
                };
                rec.value = value;
                rec.threshold = threshold_text(rule, limit);
                rec.severity = rule.severity;
                let for_ms = rule.for_.0.as_millis() as u64;
                match (rec.phase, holds) {
                    (AlertPhase::Inactive | AlertPhase::Resolved, true) => {
                        rec.phase = AlertPhase::Pending;
                        rec.since_ms = Some(now_ms);
                        rec.fired_ms = None;
                        rec.resolved_ms = None;
                        rec.notified = false;
                    }
                    (AlertPhase::Pending, false) => {
                        rec.phase = AlertPhase::Inactive;
                        rec.since_ms = None;
                    }
                    (AlertPhase::Firing, false) => {
                        rec.phase = AlertPhase::Resolved;
                        rec.resolved_ms = Some(now_ms);
                        if rec.notified {
                            send(
                                &self.env,
                                &self.dir,
                                &self.outbox,
                                alerts,
                                rule,
                                rec,
                                "resolved",
                            );
                        }
                        rec.notified = false;
                    }
                    _ => {}
                }
                if rec.phase == AlertPhase::Pending
                    && now_ms.saturating_sub(rec.since_ms.unwrap_or(now_ms)) >= for_ms
                {
                    rec.phase = AlertPhase::Firing;
                    rec.fired_ms = Some(now_ms);
                }
                if rec.phase == AlertPhase::Firing && !rec.notified && !silenced {
                    rec.notified = true;
                    send(
                        &self.env,
                        &self.dir,
                        &self.outbox,
                        alerts,
                        rule,
                        rec,
                        "firing",
                    );
                }
                if new || rec.phase != before.phase || rec.notified != before.notified {
                    changed = true;
                }
                self.values_changed |= rec.value != before.value;
            }
        }
        // Rules removed from hangar.yml are forgotten; a service not observed
        // now (a restarted controller has not started it yet) keeps its alerts.
        let before = self.records.len();
        self.records
            .retain(|_, r| alerts.rules.contains_key(&r.rule));
        changed || before != self.records.len()
    }

    /// Writes the states when one changed, or values changed a while ago.
    fn save_if(&mut self, changed: bool) {
        let values_due = self.values_changed && self.last_save.elapsed() >= VALUES_EVERY;
        if !(changed || values_due) {
            return;
        }
        self.values_changed = false;
        self.last_save = Instant::now();
        self.save();
    }

    fn save(&self) {
        let list: Vec<&AlertRecord> = self.records.values().collect();
        if let Ok(bytes) = serde_json::to_vec_pretty(&list)
            && let Err(e) = write_atomic(&self.dir.join(STATES), &bytes)
        {
            tracing::warn!("alerts: cannot save {}: {e}", STATES);
        }
    }
}

/// Records the notice of `rec` becoming `status` in the event log, and
/// queues it for the webhook when there is one.
fn send(
    env: &str,
    dir: &Path,
    outbox: &Outbox,
    alerts: &Alerts,
    rule: &AlertRule,
    rec: &AlertRecord,
    status: &'static str,
) {
    let for_ = format!("{}s", rule.for_.0.as_secs_f64());
    let notice = Notice {
        status,
        env: env.to_string(),
        service: rec.service.clone(),
        rule: rec.rule.clone(),
        kind: rec.kind.clone(),
        severity: rec.severity,
        value: rec.value.clone(),
        threshold: rec.threshold.clone(),
        summary: match status {
            "firing" => format!(
                "{}/{}: {} is {} (threshold {}) for {for_}",
                env, rec.service, rec.kind, rec.value, rec.threshold
            ),
            _ => format!(
                "{}/{}: {} is back to {} (threshold {})",
                env, rec.service, rec.kind, rec.value, rec.threshold
            ),
        },
        for_,
        started_at_ms: rec.since_ms,
        resolved_at_ms: rec.resolved_ms,
    };
    if let Ok(value) = serde_json::to_value(&notice)
        && let Err(e) = append_event(dir, &value)
    {
        tracing::warn!("alerts: cannot append to {EVENTS}: {e}");
    }
    let Some(url) = &alerts.webhook else { return };
    let secret = alerts
        .secret
        .as_ref()
        .and_then(|name| std::env::var(name).ok())
        .filter(|s| !s.is_empty());
    let _ = outbox.send((url.value.clone(), secret, notice));
}

/// `sha256=<hex>` of the body: the scheme of the server's webhook channel
/// (GitHub's `X-Hub-Signature-256`). Written again here because the server
/// depends on this crate, not the other way round; the test checks both
/// against GitHub's documented example.
pub fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable_hmac());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn unreachable_hmac() -> Hmac256 {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    std::process::abort()
}

type Hmac256 = hmac::Hmac<sha2::Sha256>;

/// Sends notices in order; each is tried 3 times (1 s, then 2 s apart) on a
/// network error or a 5xx, then dropped with a log line.
async fn sender(mut inbox: tokio::sync::mpsc::UnboundedReceiver<(String, Option<String>, Notice)>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("alerts: no HTTP client: {e}");
            return;
        }
    };
    while let Some((url, secret, notice)) = inbox.recv().await {
        let Ok(body) = serde_json::to_vec(&notice) else {
            continue;
        };
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(attempt as u64)).await;
            }
            let mut req = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-hangar-event", "alert")
                .body(body.clone());
            if let Some(secret) = &secret {
                req = req.header("x-hangar-signature-256", signature(secret, &body));
            }
            match req.send().await {
                Ok(r) if !r.status().is_server_error() => {
                    if !r.status().is_success() {
                        tracing::warn!(
                            "alerts: {url} answered {} to {}",
                            r.status(),
                            notice.summary
                        );
                    }
                    break;
                }
                Ok(r) => tracing::warn!("alerts: {url} answered {}", r.status()),
                Err(e) => tracing::warn!("alerts: {url}: {e}"),
            }
        }
    }
}

/// Starts watching the controller's environment: the metrics listener and
/// the alert rules. Ends with the controller.
pub(crate) fn watch(ctl: &Arc<Controller>) {
    let weak = Arc::downgrade(ctl);
    let (outbox, inbox) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(sender(inbox));
    let dir = ctl.env_dir().to_path_buf();
    let mut eval = Evaluator {
        env: ctl.env.clone(),
        records: load_states(&dir)
            .into_iter()
            .map(|r| (r.key(), r))
            .collect(),
        dir,
        past: HashMap::new(),
        outbox,
        values_changed: false,
        last_save: Instant::now(),
    };
    tokio::spawn(async move {
        let mut metrics: Option<(std::net::SocketAddr, Option<MetricsServer>)> = None;
        let mut router_restarts = 0;
        loop {
            let Some(ctl) = weak.upgrade() else { return };
            let env = ctl.env_settings();
            let listen = env
                .metrics_listen
                .as_ref()
                .and_then(|m| m.value.parse::<std::net::SocketAddr>().ok());
            // A restarted router process serves no metrics until told again.
            let restarted = ctl.router_restarts() != router_restarts;
            router_restarts = ctl.router_restarts();
            if restarted || metrics.as_ref().map(|m| m.0) != listen {
                metrics = listen.map(|addr| (addr, serve_metrics(&ctl, &weak, Some(addr))));
                if listen.is_none() {
                    serve_metrics(&ctl, &weak, None);
                }
            }
            let observed = ctl.observe();
            for obs in &observed {
                ctl.set_instance_gauges(&obs.service, gauges(&obs.instances));
            }
            let interval = match &env.alerts {
                Some(alerts) if !alerts.rules.is_empty() => {
                    let changed = eval.evaluate(alerts, &observed, now_unix_ms());
                    eval.save_if(changed);
                    alerts.interval.0
                }
                _ => Duration::from_secs(1),
            };
            drop(ctl);
            tokio::time::sleep(interval.clamp(Duration::from_millis(50), Duration::from_secs(60)))
                .await;
        }
    });
}

/// Each version's instances, up (healthy) and down, and their restarts.
fn gauges(instances: &[InstanceStatus]) -> Vec<InstanceGauge> {
    let mut by_version: BTreeMap<&str, InstanceGauge> = BTreeMap::new();
    for i in instances {
        let g = by_version
            .entry(&i.version)
            .or_insert_with(|| InstanceGauge {
                version: i.version.clone(),
                ..Default::default()
            });
        match i.phase {
            Phase::Healthy => g.up += 1,
            Phase::Stopped => {}
            _ => g.down += 1,
        }
        g.restarts += i.restarts as u64;
    }
    by_version.into_values().collect()
}

/// Serves (or stops serving) `/metrics`: in the router process when there is
/// one (it outlives the controller), else on a listener of the controller's.
fn serve_metrics(
    ctl: &Controller,
    weak: &Weak<Controller>,
    listen: Option<std::net::SocketAddr>,
) -> Option<MetricsServer> {
    if let Some(link) = ctl.router_link() {
        if let Err(e) = link.call(&Request::Metrics {
            env: ctl.env.clone(),
            listen,
        }) {
            tracing::error!("environment `{}`: {e}", ctl.env);
        }
        return None;
    }
    let addr = listen?;
    let weak = weak.clone();
    let env = ctl.env.clone();
    let render: hangar_router::metrics::Render = Arc::new(move || {
        let Some(ctl) = weak.upgrade() else {
            return String::new();
        };
        let routers = ctl.local_routers();
        let list: Vec<(&str, &hangar_router::Router)> =
            routers.iter().map(|(n, r)| (n.as_str(), &**r)).collect();
        hangar_router::metrics::render(&env, &list)
    });
    match hangar_router::metrics::serve(addr, render) {
        Ok(server) => Some(server),
        Err(e) => {
            tracing::error!(
                "environment `{}`: metrics cannot listen on {addr}: {e}",
                ctl.env
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_githubs_documented_example() {
        // docs.github.com, "Validating webhook deliveries".
        assert_eq!(
            signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn silences_expire_and_can_be_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let until = silence(dir.path(), "errors", Duration::from_secs(3600)).unwrap();
        assert!(until > now_unix_ms() + 3_590_000);
        assert_eq!(list(dir.path()).1.get("errors"), Some(&until));
        silence(dir.path(), "errors", Duration::ZERO).unwrap();
        assert!(list(dir.path()).1.is_empty());
    }
}
