//! The four DORA keys, computed from an environment's deployment history as DORA
//! defines them:
//! - deployment frequency: successful deployments to the environment per day;
//! - lead time for changes: commit time to running in the environment (median);
//! - change failure rate: deployments that failed, were rolled back automatically
//!   or aborted, or were later undone by a manual rollback, over all deployments;
//! - failed deployment recovery time: from the start of a failed deployment to the
//!   moment the environment served a good version again (median).

use serde::Serialize;

use crate::state::{DeploymentRecord, Outcome};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Dora {
    pub env: String,
    pub since_days: f64,
    pub deployments: usize,
    pub deployment_frequency_per_day: f64,
    pub lead_time_seconds_median: Option<f64>,
    pub change_failure_rate: Option<f64>,
    pub recovery_time_seconds_median: Option<f64>,
}

pub fn compute(env: &str, history: &[DeploymentRecord], now: u64, since_secs: u64) -> Dora {
    let from = now.saturating_sub(since_secs);
    let recs: Vec<&DeploymentRecord> = history
        .iter()
        .filter(|r| r.env == env && r.started >= from && r.strategy != "start")
        .collect();
    let changes: Vec<&&DeploymentRecord> = recs
        .iter()
        .filter(|r| r.outcome != Outcome::Rollback)
        .collect();
    let succeeded: Vec<&&&DeploymentRecord> = changes
        .iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .collect();
    let days = since_secs as f64 / 86400.0;
    let lead: Vec<f64> = succeeded
        .iter()
        .filter_map(|r| r.commit_time.map(|c| r.finished.saturating_sub(c) as f64))
        .collect();
    // A successful deployment later undone by a manual rollback failed too.
    let undone = |r: &DeploymentRecord| {
        recs.iter().any(|x| {
            x.outcome == Outcome::Rollback
                && x.service == r.service
                && x.rollback_from.as_deref() == Some(r.version.as_str())
                && x.started >= r.started
        })
    };
    let failed: Vec<&&DeploymentRecord> = changes
        .iter()
        .copied()
        .filter(|r| r.outcome != Outcome::Succeeded || undone(r))
        .collect();
    let recovery: Vec<f64> = failed
        .iter()
        .filter_map(|r| {
            if r.strategy == "workflow" {
                // A workflow's deployment job knows nothing of traffic: the
                // environment is good again when a later deployment succeeds.
                recs.iter()
                    .filter(|x| {
                        (x.started, x.id) > (r.started, r.id) && x.outcome == Outcome::Succeeded
                    })
                    .map(|x| x.finished.saturating_sub(r.started) as f64)
                    .reduce(f64::min)
            } else if r.outcome != Outcome::Succeeded {
                // Automatic rollback or abort: restored when the deployment finished.
                Some(r.finished.saturating_sub(r.started) as f64)
            } else {
                // Undone manually: restored when the rollback finished.
                recs.iter()
                    .find(|x| {
                        x.outcome == Outcome::Rollback
                            && x.service == r.service
                            && x.rollback_from.as_deref() == Some(r.version.as_str())
                    })
                    .map(|x| x.finished.saturating_sub(r.started) as f64)
            }
        })
        .collect();
    Dora {
        env: env.into(),
        since_days: days,
        deployments: changes.len(),
        deployment_frequency_per_day: if days > 0.0 {
            succeeded.len() as f64 / days
        } else {
            0.0
        },
        lead_time_seconds_median: median(lead),
        change_failure_rate: (!changes.is_empty())
            .then(|| failed.len() as f64 / changes.len() as f64),
        recovery_time_seconds_median: median(recovery),
    }
}

/// The environments that have a deployment history under a data directory
/// (`<data>/envs/<env>/history.jsonl`), sorted.
pub fn environments(data: &std::path::Path) -> Vec<String> {
    let mut envs: Vec<String> = std::fs::read_dir(data.join("envs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("history.jsonl").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    envs.sort();
    envs
}

/// The four keys as OpenMetrics gauges, one sample per (source, environment),
/// for a server's `/metrics`. Keys without data (no successful deployment with
/// a commit time, no failure) are left out rather than reported as zero.
pub fn openmetrics(rows: &[(&str, &Dora)]) -> String {
    use std::fmt::Write;
    type Get = fn(&Dora) -> Option<f64>;
    let families: [(&str, &str, Get); 5] = [
        (
            "dora_deployments",
            "Deployments in the window (rollbacks excluded)",
            |d| Some(d.deployments as f64),
        ),
        (
            "dora_deployment_frequency_per_day",
            "Successful deployments per day",
            |d| Some(d.deployment_frequency_per_day),
        ),
        (
            "dora_lead_time_seconds",
            "Median time from commit to running in the environment",
            |d| d.lead_time_seconds_median,
        ),
        (
            "dora_change_failure_ratio",
            "Deployments that failed, were rolled back or aborted, over all deployments",
            |d| d.change_failure_rate,
        ),
        (
            "dora_recovery_time_seconds",
            "Median time from a failed deployment to a good version serving again",
            |d| d.recovery_time_seconds_median,
        ),
    ];
    let mut out = String::new();
    for (name, help, get) in families {
        let _ = writeln!(out, "# TYPE hangar_{name} gauge");
        let _ = writeln!(out, "# HELP hangar_{name} {help}.");
        for (source, d) in rows {
            if let Some(v) = get(d) {
                let _ = writeln!(
                    out,
                    "hangar_{name}{{source=\"{}\",env=\"{}\",window_days=\"{}\"}} {v}",
                    label(source),
                    label(&d.env),
                    d.since_days
                );
            }
        }
    }
    out
}

/// A label value escaped as the exposition format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_has_one_family_per_key_and_skips_missing_values() {
        let d = Dora {
            env: "prod".into(),
            since_days: 30.0,
            deployments: 4,
            deployment_frequency_per_day: 0.1,
            lead_time_seconds_median: Some(700.0),
            change_failure_rate: Some(0.25),
            recovery_time_seconds_median: None,
        };
        let text = openmetrics(&[("shop\"x", &d)]);
        assert!(text.contains(
            "hangar_dora_change_failure_ratio{source=\"shop\\\"x\",env=\"prod\",window_days=\"30\"} 0.25\n"
        ), "{text}");
        assert!(text.contains("hangar_dora_lead_time_seconds{"));
        assert!(text.contains("# TYPE hangar_dora_recovery_time_seconds gauge"));
        assert!(!text.contains("hangar_dora_recovery_time_seconds{"));
    }

    fn rec(
        id: u64,
        version: &str,
        outcome: Outcome,
        started: u64,
        finished: u64,
        commit_time: u64,
    ) -> DeploymentRecord {
        DeploymentRecord {
            id,
            env: "prod".into(),
            service: "api".into(),
            version: version.into(),
            previous: None,
            strategy: "canary".into(),
            commit: Some("abc".into()),
            commit_time: Some(commit_time),
            started,
            finished,
            outcome,
            rollback_from: None,
            events: vec![],
            event_times: vec![],
            started_ms: None,
            finished_ms: None,
        }
    }

    #[test]
    fn four_keys() {
        let day = 86400;
        let mut h = vec![
            rec(1, "r1", Outcome::Succeeded, 1000, 1100, 400), // lead 700
            rec(2, "r2", Outcome::RolledBack, 2000, 2030, 1900), // failed, recovered in 30
            rec(3, "r3", Outcome::Succeeded, 3000, 3100, 2100), // lead 1000, later rolled back
            rec(4, "r4", Outcome::Succeeded, 5000, 5100, 4900), // lead 200
        ];
        let mut rb = rec(5, "r1", Outcome::Rollback, 3500, 3501, 400);
        rb.rollback_from = Some("r3".into());
        h.push(rb);
        let d = compute("prod", &h, 2 * day, 2 * day);
        assert_eq!(d.deployments, 4);
        assert_eq!(d.deployment_frequency_per_day, 1.5);
        assert_eq!(d.lead_time_seconds_median, Some(700.0));
        assert_eq!(d.change_failure_rate, Some(0.5));
        // r2: 30 s; r3: 3000 -> 3501 = 501 s
        assert_eq!(d.recovery_time_seconds_median, Some(265.5));
        assert_eq!(
            compute("staging", &h, 2 * day, 2 * day).change_failure_rate,
            None
        );
    }
}
