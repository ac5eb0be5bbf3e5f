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
            if r.outcome != Outcome::Succeeded {
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
