//! Per-version request counters and a latency histogram: the input of rollout analysis.
//!
//! Lock-free on the hot path (relaxed atomics). The histogram has 8 linear
//! sub-buckets per power of two of microseconds (≤ 12.5% relative error), which is
//! plenty to compare a canary's p95 with a threshold, and costs one
//! `fetch_add` per request. A dependency (hdrhistogram) would need a lock here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

const SUB: usize = 8;
const POWERS: usize = 40;
const BUCKETS: usize = SUB * POWERS;

/// Live counters of one version.
#[derive(Debug)]
pub struct VersionStats {
    requests: AtomicU64,
    errors: AtomicU64,
    connect_errors: AtomicU64,
    /// Answers by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    classes: [AtomicU64; 5],
    /// Total latency in microseconds (a Prometheus histogram's `_sum`).
    sum_micros: AtomicU64,
    buckets: Box<[AtomicU64]>,
    /// When counting started (Unix milliseconds): the counters' `_created`
    /// in OpenMetrics, which tells a reader that a restarted router's
    /// counters started again from zero.
    created_ms: u64,
}

impl Default for VersionStats {
    fn default() -> Self {
        VersionStats {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            classes: Default::default(),
            sum_micros: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            created_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

/// The status classes counted, in the order of [`Snapshot::classes`].
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn bucket_of(micros: u64) -> usize {
    if micros < SUB as u64 {
        return micros as usize;
    }
    let power = 63 - micros.leading_zeros() as usize; // floor(log2)
    let shift = power - 3; // SUB = 2^3
    let sub = ((micros >> shift) as usize) & (SUB - 1);
    ((power - 2) * SUB + sub).min(BUCKETS - 1)
}

fn bucket_upper_micros(index: usize) -> u64 {
    if index < SUB {
        return index as u64 + 1;
    }
    let power = index / SUB + 2;
    let sub = (index % SUB) as u64;
    let shift = power - 3;
    ((SUB as u64 + sub + 1) << shift).saturating_sub(1)
}

impl VersionStats {
    /// Records one answered request with its HTTP status (≥ 500 is an error).
    pub fn record(&self, latency: Duration, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        let micros = latency.as_micros().min(u64::MAX as u128) as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Records a request that never reached an instance of this version.
    pub fn record_connect_error(&self) {
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A consistent-enough copy for analysis (each counter is read once).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            connect_errors: self.connect_errors.load(Ordering::Relaxed),
            classes: std::array::from_fn(|i| self.classes[i].load(Ordering::Relaxed)),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            created_ms: self.created_ms,
        }
    }
}

/// Counters at one moment; subtract two to get a window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub requests: u64,
    /// Answers with status ≥ 500.
    pub errors: u64,
    /// Connections refused or reset before an answer.
    pub connect_errors: u64,
    /// Answers per status class (see [`CLASSES`]); zero in snapshots of older routers.
    #[serde(default)]
    pub classes: [u64; 5],
    /// Sum of the answers' latencies, in microseconds.
    #[serde(default)]
    pub sum_micros: u64,
    buckets: Vec<u64>,
    /// When these counters started (Unix milliseconds; 0 in snapshots of older routers).
    #[serde(default)]
    pub created_ms: u64,
}

/// What analysis reads off a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    /// (errors + connect errors) / (requests + connect errors).
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// When the counters summed here started (Unix milliseconds, 0 if unknown):
    /// a restarted router counts again from zero.
    pub since_ms: u64,
}

impl Snapshot {
    /// The counts accumulated since `earlier`. Counters that started again
    /// in between (a restarted router: another creation time, or fewer
    /// requests) count whole, as Prometheus' `rate()` treats a counter
    /// reset: what was counted before the restart is not known, but is not
    /// negative, and a window is not emptied by it.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let restarted = (self.created_ms != earlier.created_ms
            && self.created_ms != 0
            && earlier.created_ms != 0)
            || self.requests < earlier.requests
            || self.connect_errors < earlier.connect_errors;
        if restarted {
            return self.clone();
        }
        Snapshot {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            connect_errors: self.connect_errors.saturating_sub(earlier.connect_errors),
            classes: std::array::from_fn(|i| self.classes[i].saturating_sub(earlier.classes[i])),
            sum_micros: self.sum_micros.saturating_sub(earlier.sum_micros),
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, b)| b.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0)))
                .collect(),
            created_ms: self.created_ms,
        }
    }

    /// Adds `other`'s counts (a service's versions summed).
    pub fn add(&mut self, other: &Snapshot) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.connect_errors += other.connect_errors;
        for (a, b) in self.classes.iter_mut().zip(other.classes) {
            *a += b;
        }
        self.sum_micros += other.sum_micros;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        // The sum counts since the latest start of its parts.
        self.created_ms = self.created_ms.max(other.created_ms);
    }

    /// Answers whose latency is at most `micros`, counted from the buckets
    /// whose upper bound is at most `micros`: a bucket straddling the bound
    /// (at most 12.5% wide) counts in the next one, so a cumulative count is
    /// never over-stated.
    pub fn answered_within(&self, micros: u64) -> u64 {
        self.buckets
            .iter()
            .enumerate()
            .take_while(|(i, _)| bucket_upper_micros(*i) <= micros)
            .map(|(_, c)| c)
            .sum()
    }

    /// The latency below which `q` (0..1) of the requests were answered.
    pub fn quantile(&self, q: f64) -> Duration {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_micros(bucket_upper_micros(i));
            }
        }
        Duration::from_micros(bucket_upper_micros(BUCKETS - 1))
    }

    pub fn summary(&self) -> Summary {
        let attempts = self.requests + self.connect_errors;
        let failures = self.errors + self.connect_errors;
        Summary {
            requests: self.requests,
            errors: failures,
            error_rate: if attempts == 0 {
                0.0
            } else {
                failures as f64 / attempts as f64
            },
            p50_ms: self.quantile(0.50).as_secs_f64() * 1000.0,
            p95_ms: self.quantile(0.95).as_secs_f64() * 1000.0,
            p99_ms: self.quantile(0.99).as_secs_f64() * 1000.0,
            since_ms: self.created_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for micros in [
            0u64, 1, 7, 8, 9, 15, 16, 100, 1_000, 12_345, 1_000_000, 60_000_000,
        ] {
            let b = bucket_of(micros);
            assert!(b >= last, "bucket order at {micros}");
            last = b;
            let upper = bucket_upper_micros(b);
            assert!(
                upper >= micros,
                "{micros} above its bucket's upper bound {upper}"
            );
            assert!(
                upper as f64 <= micros.max(1) as f64 * 1.25 + 1.0,
                "{micros}: bucket too wide ({upper})"
            );
        }
    }

    #[test]
    fn quantiles_and_windows() {
        let s = VersionStats::default();
        for _ in 0..90 {
            s.record(Duration::from_millis(1), 200);
        }
        let before = s.snapshot();
        for _ in 0..10 {
            s.record(Duration::from_millis(100), 503);
        }
        let all = s.snapshot().summary();
        assert_eq!(all.requests, 100);
        assert!((all.error_rate - 0.10).abs() < 1e-9);
        assert!(
            all.p50_ms < 1.3 && all.p99_ms >= 100.0 && all.p99_ms < 125.0,
            "{all:?}"
        );
        let snap = s.snapshot();
        assert_eq!(snap.classes, [0, 90, 0, 0, 10]);
        assert_eq!(snap.sum_micros, 90 * 1_000 + 10 * 100_000);
        assert_eq!(snap.answered_within(2_000), 90);
        assert_eq!(snap.answered_within(200_000), 100);
        let window = snap.since(&before).summary();
        assert_eq!(window.requests, 10);
        assert_eq!(window.error_rate, 1.0);
        let mut total = before.clone();
        total.add(&snap.since(&before));
        assert_eq!(total, snap);
    }

    /// A window across a restart of the router counts what the restarted
    /// one counted, never a negative nor an empty difference.
    #[test]
    fn a_window_across_a_restart_counts_the_new_counters() {
        let old = VersionStats::default();
        for _ in 0..100 {
            old.record(Duration::from_millis(1), 200);
        }
        let before = old.snapshot();
        let restarted = VersionStats {
            created_ms: before.created_ms + 1,
            ..VersionStats::default()
        };
        for _ in 0..10 {
            restarted.record(Duration::from_millis(1), 503);
        }
        let window = restarted.snapshot().since(&before).summary();
        assert_eq!((window.requests, window.error_rate), (10, 1.0));
        assert_eq!(window.since_ms, before.created_ms + 1);
        // From a router too old to say when it started: fewer requests tell.
        let (mut a, mut b) = (before.clone(), restarted.snapshot());
        (a.created_ms, b.created_ms) = (0, 0);
        assert_eq!(b.since(&a).summary().requests, 10);
    }
}
