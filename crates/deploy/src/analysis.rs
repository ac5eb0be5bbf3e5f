//! Judging a new version from the router's numbers.

use hangar_router::Summary;

/// Thresholds for one judgement.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Absolute ceiling on the new version's error rate (fraction).
    pub max_error_rate: f64,
    /// Ceiling on the new version's p95 latency in milliseconds.
    pub max_p95_ms: Option<f64>,
    /// How much worse than stable the error rate may be (fraction), if set.
    pub max_error_rate_increase: Option<f64>,
    /// No verdict below this many requests.
    pub min_requests: u64,
}

/// The default error-rate ceiling when `hangar.yml` sets none.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.05;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Too little traffic to say anything.
    Inconclusive(String),
    Pass(String),
    Fail(String),
}

/// Compares the candidate's window with the thresholds and with stable's window.
pub fn judge(t: &Thresholds, candidate: &Summary, stable: Option<&Summary>) -> Verdict {
    let attempts = candidate.requests;
    let numbers = describe(candidate, stable);
    if attempts < t.min_requests {
        return Verdict::Inconclusive(format!(
            "{attempts} of the {} requests needed for a verdict ({numbers})",
            t.min_requests
        ));
    }
    if candidate.error_rate > t.max_error_rate {
        return Verdict::Fail(format!(
            "error rate {:.2}% is above the {:.2}% limit ({numbers})",
            candidate.error_rate * 100.0,
            t.max_error_rate * 100.0
        ));
    }
    if let Some(max) = t.max_p95_ms
        && candidate.p95_ms > max
    {
        return Verdict::Fail(format!(
            "p95 {:.1} ms is above the {max:.1} ms limit ({numbers})",
            candidate.p95_ms
        ));
    }
    if let (Some(inc), Some(s)) = (t.max_error_rate_increase, stable)
        && s.requests > 0
        && candidate.error_rate - s.error_rate > inc
    {
        return Verdict::Fail(format!(
            "error rate {:.2}% exceeds stable's {:.2}% by more than {:.2} points ({numbers})",
            candidate.error_rate * 100.0,
            s.error_rate * 100.0,
            inc * 100.0
        ));
    }
    Verdict::Pass(format!("within limits ({numbers})"))
}

fn describe(c: &Summary, s: Option<&Summary>) -> String {
    let mut out = format!(
        "new: {} requests, {} errors ({:.2}%), p95 {:.1} ms",
        c.requests,
        c.errors,
        c.error_rate * 100.0,
        c.p95_ms
    );
    if let Some(s) = s {
        out.push_str(&format!(
            "; stable: {} requests, {:.2}% errors, p95 {:.1} ms",
            s.requests,
            s.error_rate * 100.0,
            s.p95_ms
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(requests: u64, errors: u64, p95_ms: f64) -> Summary {
        Summary {
            requests,
            errors,
            error_rate: errors as f64 / requests.max(1) as f64,
            p50_ms: 1.0,
            p95_ms,
            p99_ms: p95_ms,
            since_ms: 0,
        }
    }

    const T: Thresholds = Thresholds {
        max_error_rate: 0.01,
        max_p95_ms: Some(200.0),
        max_error_rate_increase: Some(0.005),
        min_requests: 50,
    };

    #[test]
    fn no_verdict_at_low_traffic() {
        // 3 errors in 10 requests would fail, but 10 requests prove nothing.
        assert!(
            matches!(judge(&T, &summary(10, 3, 5.0), None), Verdict::Inconclusive(m) if m.contains("10 of the 50"))
        );
    }

    #[test]
    fn fails_on_each_threshold_with_numbers() {
        assert!(
            matches!(judge(&T, &summary(100, 30, 5.0), None), Verdict::Fail(m) if m.contains("30.00%") && m.contains("1.00% limit"))
        );
        assert!(
            matches!(judge(&T, &summary(100, 0, 250.0), None), Verdict::Fail(m) if m.contains("p95 250.0 ms"))
        );
        let stable = summary(1000, 0, 5.0);
        assert!(
            matches!(judge(&Thresholds { max_error_rate: 0.5, ..T }, &summary(100, 1, 5.0), Some(&stable)), Verdict::Fail(m) if m.contains("exceeds stable"))
        );
        assert!(matches!(
            judge(&T, &summary(100, 0, 5.0), Some(&stable)),
            Verdict::Pass(_)
        ));
    }
}
