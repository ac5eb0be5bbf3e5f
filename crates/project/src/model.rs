//! The typed model of `hangar.yml`. Field names are the YAML keys.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
pub use serde_saphyr::{Location, Spanned};

pub use crate::duration::{Dur, Percent};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    #[serde(default)]
    pub services: IndexMap<String, Spanned<Service>>,
    #[serde(default)]
    pub environments: IndexMap<String, Spanned<Environment>>,
    /// Owned by the release crate; kept raw here.
    #[serde(default)]
    pub release: Option<serde_json::Value>,
    /// Owned by the scanners; kept raw here.
    #[serde(default)]
    pub scan: Option<serde_json::Value>,
    /// Where `hangar run` fetches marketplace actions from.
    #[serde(default)]
    pub actions: Option<Actions>,
    /// Disaster-recovery targets and where project backups go.
    #[serde(default)]
    pub recovery: Option<Recovery>,
    /// Who `hangar serve` tells about this repository's runs and deployments.
    #[serde(default)]
    pub notifications: Vec<Spanned<Notification>>,
}

/// The events a notification rule can name: the one list, for hangar.yml's
/// rules and the server's API alike.
pub const NOTIFICATION_EVENTS: &[&str] = &[
    "run_failed",
    "run_fixed",
    "approval_waiting",
    "deployment_started",
    "deployment_succeeded",
    "deployment_failed",
    "agent_lost",
    // The alert rules of a project `hangar serve` watches, relayed by it.
    "alert_firing",
    "alert_resolved",
    // A scheduled backup of a watched project failed (`recovery.every` or `.schedule`).
    "backup_failed",
];

/// The channels a notification rule can deliver to.
pub const NOTIFICATION_CHANNELS: &[&str] = &["slack", "teams", "webhook", "email"];

/// One rule of `notifications:`. The file is in the repository, so it names
/// the server-side secrets holding the channel's URL (a Slack or Teams URL is
/// itself a credential; an SMTP URL carries a password) instead of the values.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    pub events: Vec<Spanned<String>>,
    pub channel: Spanned<String>,
    /// The secret (repository's or server's) holding the webhook URL, or the
    /// `smtp://` / `smtps://` URL for e-mail.
    pub url_secret: Spanned<String>,
    /// The secret the generic webhook's body is signed with (HMAC-SHA256).
    #[serde(default)]
    pub signing_secret: Option<Spanned<String>>,
}

/// `recovery:`: what `hangar recovery backup` keeps and what a drill must achieve.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// Recovery point objective: the newest backup may be at most this old.
    #[serde(default)]
    pub rpo: Option<Dur>,
    /// Recovery time objective: a drill must have the services back within this.
    #[serde(default)]
    pub rto: Option<Dur>,
    /// Backups kept per environment (oldest removed first).
    #[serde(default = "default_keep_backups")]
    pub keep: u32,
    /// Where backups go, relative to the project (default `.hangar/backups`).
    #[serde(default)]
    pub dir: Option<String>,
    /// `hangar serve` backs up each of `environments` this often (measured
    /// from the newest backup, so a restarted server neither repeats one nor
    /// waits a whole period again).
    #[serde(default)]
    pub every: Option<Spanned<Dur>>,
    /// Or `hangar serve` backs them up at the due times of this cron
    /// expression (UTC, as GitHub's schedules; a sixth field of seconds may
    /// lead), checked by `hangar_units::cron`. Exactly one of `every` and
    /// `schedule` puts the environments on a schedule.
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    /// The environments scheduled backups cover (required with `every` or
    /// `schedule`: a drill's scratch environment is deployed too, and is not
    /// one to back up).
    #[serde(default)]
    pub environments: Vec<Spanned<String>>,
}

fn default_keep_backups() -> u32 {
    7
}

/// A stateful service's `backup:`: shell commands that write its data into
/// `$HANGAR_BACKUP_DIR` and read it back. Either may hold
/// `${{ services.NAME.host }}`, `.port` or `.url` (see [`crate::refs`]),
/// resolved to the environment's address of that service when it runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    pub run: Spanned<String>,
    pub restore: Spanned<String>,
}

/// `actions:`: the forge remote `uses:` are fetched from.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Actions {
    /// Base URL (`https://github.com` when unset): a GitHub Enterprise, Gitea or
    /// Forgejo instance, a mirror, or `file:///path/to/forge`.
    #[serde(default)]
    pub url: Option<String>,
}

/// A service: a command that listens on `$PORT`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Shell command that builds the artifact, run in the project directory.
    #[serde(default)]
    pub build: Option<String>,
    /// Shell command that starts one instance; `$PORT` is the port it must listen on.
    pub run: String,
    /// Variables of each instance; a value may hold `${{ services.NAME.host }}`,
    /// `.port` or `.url` (see [`crate::refs`]), resolved when the instance starts.
    #[serde(default)]
    pub env: IndexMap<String, Spanned<String>>,
    #[serde(default = "one")]
    pub instances: u32,
    #[serde(default)]
    pub health: Option<Health>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub stop: Stop,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Where the environment's router listens for this service (`127.0.0.1:8080`).
    /// An environment may override it under `listen:`.
    #[serde(default)]
    pub listen: Option<String>,
    /// What the router speaks on `listen`: `http` (the default: weighted,
    /// sticky routing of requests, measured per answer) or `tcp` (raw
    /// connections for Postgres, Redis and the like, routed when opened).
    /// Left out of the serialised form when `http`, so that releases made
    /// before this key existed keep their fingerprints.
    #[serde(default, skip_serializing_if = "Protocol::is_http")]
    pub protocol: Protocol,
    /// Paths (relative to the project) copied into each release as the artifact.
    /// Empty means the whole project directory is the working directory of instances.
    #[serde(default)]
    pub artifact: Vec<String>,
    /// How `hangar recovery` backs up and restores this service's data.
    #[serde(default)]
    pub backup: Option<Backup>,
    /// Holds data (a database): restarted in place on a deployment (the old
    /// instance stopped, then the new one started on the same data), never
    /// two at once, never blue-greened or canaried. Left out of the
    /// serialised form when false, so older releases keep their fingerprints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stateful: bool,
}

fn one() -> u32 {
    1
}

/// How an instance is judged ready and alive.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// HTTP GET on this path must answer 2xx or 3xx.
    #[serde(default)]
    pub path: Option<String>,
    /// A TCP connect to `$PORT` must succeed.
    #[serde(default)]
    pub tcp: bool,
    /// A shell command that must exit 0 (`$PORT` is set).
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default = "default_interval")]
    pub interval: Dur,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Consecutive successes before an instance counts as healthy.
    #[serde(default = "one")]
    pub healthy_threshold: u32,
    /// Consecutive failures before a healthy instance counts as unhealthy.
    #[serde(default = "three")]
    pub unhealthy_threshold: u32,
    /// Failures during this period after start do not count.
    #[serde(default)]
    pub start_period: Dur,
    /// An instance not healthy this long after start fails the deployment.
    #[serde(default = "default_deadline")]
    pub deadline: Dur,
}

fn three() -> u32 {
    3
}
fn default_interval() -> Dur {
    Dur(std::time::Duration::from_secs(2))
}
fn default_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(1))
}
fn default_deadline() -> Dur {
    Dur(std::time::Duration::from_secs(60))
}

impl Default for Health {
    fn default() -> Self {
        Health {
            path: None,
            tcp: true,
            command: None,
            interval: default_interval(),
            timeout: default_timeout(),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
            start_period: Dur::default(),
            deadline: default_deadline(),
        }
    }
}

/// Graceful stop.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    #[serde(default = "default_signal")]
    pub signal: String,
    /// Time between taking the instance out of the router and sending the signal.
    #[serde(default = "default_drain")]
    pub drain: Dur,
    /// Time after the signal before SIGKILL.
    #[serde(default = "default_grace")]
    pub timeout: Dur,
}

fn default_signal() -> String {
    "TERM".into()
}
fn default_drain() -> Dur {
    Dur(std::time::Duration::from_millis(500))
}
fn default_grace() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            signal: default_signal(),
            drain: default_drain(),
            timeout: default_grace(),
        }
    }
}

/// `protocol:` of a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http,
    Tcp,
}

impl Protocol {
    pub fn is_http(&self) -> bool {
        *self == Protocol::Http
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// A place the services are deployed to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    #[serde(default = "default_strategy")]
    pub strategy: Spanned<StrategyKind>,
    #[serde(default)]
    pub rolling: Rolling,
    #[serde(default)]
    pub blue_green: BlueGreen,
    #[serde(default)]
    pub canary: Option<Canary>,
    /// Router listen address per service (overrides the service's `listen`).
    #[serde(default)]
    pub listen: IndexMap<String, Spanned<String>>,
    #[serde(default)]
    pub protection: Option<Protection>,
    #[serde(default)]
    pub vars: IndexMap<String, String>,
    /// Names of secrets (values come from the environment of `hangar deploy` or the server's store).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Releases kept on disk for rollback.
    #[serde(default = "default_keep")]
    pub keep_releases: u32,
    /// What a restarted controller does with the rollout its predecessor
    /// was running when it died.
    #[serde(default)]
    pub on_interrupt: OnInterrupt,
    /// Services deployed here; empty means all.
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    /// Where the router serves this environment's measurements in
    /// Prometheus' format (`GET /metrics`); off when unset.
    #[serde(default)]
    pub metrics_listen: Option<Spanned<String>>,
    /// Alert rules evaluated continuously from the router's measurements and
    /// the instances' health.
    #[serde(default)]
    pub alerts: Option<Alerts>,
}

/// `alerts:` of an environment: rules, and where notifications go.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// Firing and resolved alerts are POSTed here as JSON (signed with
    /// `X-Hangar-Signature-256` when `secret` names a set variable).
    #[serde(default)]
    pub webhook: Option<Spanned<String>>,
    /// Name of the environment variable that holds the webhook's HMAC key.
    #[serde(default)]
    pub secret: Option<String>,
    /// How often the rules are evaluated.
    #[serde(default = "default_alert_interval")]
    pub interval: Dur,
    #[serde(default)]
    pub rules: IndexMap<String, Spanned<AlertRule>>,
}

fn default_alert_interval() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}

/// One rule: "`kind` above `threshold` for `for`".
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub kind: Spanned<AlertKind>,
    /// The service watched; unset watches each service of the environment.
    #[serde(default)]
    pub service: Option<Spanned<String>>,
    /// A percentage (`error_rate`), a duration (`p95_latency`, `p99_latency`)
    /// or a count (`instances_down`, `restart_loop`, `health_failing`,
    /// `no_traffic`); read by [`AlertRule::limit`].
    #[serde(default)]
    pub threshold: Option<Spanned<Threshold>>,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for")]
    pub for_: Dur,
    /// Requests and restarts are counted over this trailing window.
    #[serde(default = "default_alert_window")]
    pub window: Dur,
    #[serde(default)]
    pub severity: Severity,
}

fn default_alert_window() -> Dur {
    Dur(std::time::Duration::from_secs(60))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Answers ≥ 500 and connection failures over all requests, in the window.
    ErrorRate,
    P95Latency,
    P99Latency,
    /// Instances whose process is not running (exited, backing off, given up).
    InstancesDown,
    /// Restarts in the window.
    RestartLoop,
    /// Instances running but failing their health check.
    HealthFailing,
    /// Fewer requests than the threshold (default 1) in the window.
    NoTraffic,
}

impl AlertKind {
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::ErrorRate => "error_rate",
            AlertKind::P95Latency => "p95_latency",
            AlertKind::P99Latency => "p99_latency",
            AlertKind::InstancesDown => "instances_down",
            AlertKind::RestartLoop => "restart_loop",
            AlertKind::HealthFailing => "health_failing",
            AlertKind::NoTraffic => "no_traffic",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    #[default]
    Warning,
    Info,
}

/// A threshold as written (`5%`, `300ms`, `2`): its meaning depends on the rule's kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Threshold(pub String);

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::duration::number_or_string(d).map(Threshold)
    }
}

/// A threshold read for its rule's kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// A fraction (0.05 for `5%`).
    Rate(f64),
    Latency(std::time::Duration),
    Count(u64),
}

impl AlertRule {
    /// The threshold in the unit of the rule's kind, or what to write instead.
    pub fn limit(&self) -> Result<Limit, String> {
        let kind = self.kind.value;
        let text = self.threshold.as_ref().map(|t| t.value.0.trim());
        match (kind, text) {
            (AlertKind::ErrorRate, Some(t)) => crate::parse_percent(t)
                .map(Limit::Rate)
                .map_err(|e| format!("threshold: {e}")),
            (AlertKind::ErrorRate, None) => Err(
                "an `error_rate` rule needs a `threshold:` percentage, e.g. `threshold: 5%`".into(),
            ),
            (AlertKind::P95Latency | AlertKind::P99Latency, Some(t)) => crate::parse_duration(t)
                .map(Limit::Latency)
                .map_err(|e| format!("threshold: {e}")),
            (AlertKind::P95Latency | AlertKind::P99Latency, None) => Err(format!(
                "a `{}` rule needs a `threshold:` duration, e.g. `threshold: 300ms`",
                kind.name()
            )),
            (_, Some(t)) => t.parse::<u64>().map(Limit::Count).map_err(|_| {
                format!(
                    "the threshold of a `{}` rule is a whole number, not `{t}`",
                    kind.name()
                )
            }),
            (AlertKind::RestartLoop, None) => Ok(Limit::Count(3)),
            (_, None) => Ok(Limit::Count(1)),
        }
    }
}

fn default_keep() -> u32 {
    5
}

fn default_strategy() -> Spanned<StrategyKind> {
    Spanned::new(StrategyKind::Rolling, Location::UNKNOWN, Location::UNKNOWN)
}

/// `on_interrupt:` of an environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnInterrupt {
    /// Traffic back to the stable version; the new one is stopped.
    #[default]
    Abort,
    /// The rollout goes on from the step it had reached (the canary weight,
    /// the blue-green switch, the rolling batches), judged as before.
    Resume,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    #[default]
    Rolling,
    BlueGreen,
    Canary,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rolling {
    /// Extra instances allowed above `instances` during the rollout.
    #[serde(default = "one")]
    pub max_surge: u32,
    /// Instances allowed below `instances` during the rollout.
    #[serde(default)]
    pub max_unavailable: u32,
}

impl Default for Rolling {
    fn default() -> Self {
        Rolling {
            max_surge: 1,
            max_unavailable: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlueGreen {
    /// How long the old (blue) version stays warm after the switch.
    #[serde(default = "default_scale_down")]
    pub scale_down_delay: Dur,
    /// Mirror-free pre-promotion analysis: route this fraction of traffic to green
    /// for `analysis_duration` and judge it before switching.
    #[serde(default)]
    pub pre_promotion: Option<Analysis>,
    /// Switch without waiting for `hangar promote`.
    #[serde(default = "yes")]
    pub auto_promote: bool,
}

fn yes() -> bool {
    true
}
fn default_scale_down() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}

impl Default for BlueGreen {
    fn default() -> Self {
        BlueGreen {
            scale_down_delay: default_scale_down(),
            pre_promotion: None,
            auto_promote: true,
        }
    }
}

/// Thresholds a version is judged against.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default = "default_interval_30")]
    pub duration: Dur,
    #[serde(default)]
    pub max_error_rate: Option<Percent>,
    #[serde(default)]
    pub max_p95: Option<Dur>,
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
}

fn default_weight() -> u32 {
    10
}
fn default_interval_30() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}
fn default_min_requests() -> u64 {
    20
}

/// Canary: weights in steps, judged at each step.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// Percent of traffic at each step; the last should be 100.
    pub steps: Spanned<Vec<u32>>,
    /// Pause at each step before judging it.
    #[serde(default = "default_interval_30")]
    pub interval: Dur,
    #[serde(default)]
    pub max_error_rate: Option<Percent>,
    #[serde(default)]
    pub max_p95: Option<Dur>,
    /// The canary's error rate may exceed stable's by at most this much.
    #[serde(default)]
    pub max_error_rate_increase: Option<Percent>,
    /// No judgement before this many requests reached the canary in the step.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// A step without enough traffic by then pauses for a human (`hangar promote` / `abort`).
    #[serde(default = "default_step_deadline")]
    pub step_deadline: Dur,
    /// Retry an idempotent request that failed on the canary on the stable version.
    #[serde(default)]
    pub retry_on_stable: bool,
}

fn default_step_deadline() -> Dur {
    Dur(std::time::Duration::from_secs(300))
}

/// Rules a deployment must pass before it starts.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Protection {
    #[serde(default)]
    pub reviewers: Vec<String>,
    #[serde(default)]
    pub wait: Option<Dur>,
    #[serde(default)]
    pub branches: Vec<String>,
    /// GitHub's "prevent self-review": the identity that triggered a run
    /// may not approve its deployment (enforced by `hangar serve`).
    #[serde(default)]
    pub prevent_self_review: bool,
}

impl Project {
    /// The services an environment deploys, in dependency order (dependencies
    /// first): those its `services:` lists (all when it lists none), without
    /// the services they depend on that it does not list.
    pub fn services_in_order(&self, env: Option<&Environment>) -> Vec<String> {
        let listed: Vec<&str> = match env {
            Some(e) if !e.services.is_empty() => {
                e.services.iter().map(|s| s.value.as_str()).collect()
            }
            _ => return self.services_with_dependencies(env),
        };
        self.services_with_dependencies(env)
            .into_iter()
            .filter(|s| listed.contains(&s.as_str()))
            .collect()
    }

    /// As [`Project::services_in_order`], with every service they depend on
    /// (`--with-dependencies`).
    pub fn services_with_dependencies(&self, env: Option<&Environment>) -> Vec<String> {
        let wanted: Vec<&str> = match env {
            Some(e) if !e.services.is_empty() => {
                e.services.iter().map(|s| s.value.as_str()).collect()
            }
            _ => self.services.keys().map(String::as_str).collect(),
        };
        let mut order = Vec::new();
        let mut seen = std::collections::HashSet::new();
        fn visit<'a>(
            p: &'a Project,
            name: &'a str,
            seen: &mut std::collections::HashSet<&'a str>,
            order: &mut Vec<String>,
        ) {
            if !seen.insert(name) {
                return;
            }
            if let Some(svc) = p.services.get(name) {
                for dep in &svc.value.depends_on {
                    visit(p, &dep.value, seen, order);
                }
            }
            order.push(name.to_string());
        }
        for name in wanted {
            visit(self, name, &mut seen, &mut order);
        }
        order
    }

    /// The router address for a service in an environment, if it has one.
    pub fn listen_address(&self, env: &Environment, service: &str) -> Option<String> {
        env.listen
            .get(service)
            .map(|s| s.value.clone())
            .or_else(|| {
                self.services
                    .get(service)
                    .and_then(|s| s.value.listen.clone())
            })
    }
}
