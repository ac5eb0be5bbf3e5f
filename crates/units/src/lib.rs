//! Numbers, durations and cron schedules a user writes (workflow `timeout-minutes`, hangar.yml
//! intervals, deadlines, percentages), read by one checked parser.
//!
//! Every reader of a number that came from a file goes through here, so that no
//! value can reach `Duration::from_secs_f64` (which panics on overflow) or an
//! unchecked cast, and every bound is written down once. Hand-written rather
//! than `humantime`: the accepted forms are few, bare numbers must mean seconds
//! (YAML writes `30` and `30s` alike), and the errors must say how to write the
//! value, which callers then place at the file's line and column.
//!
//! [`cron`] does the same for cron schedules.

use std::time::Duration;

pub mod cron;

/// The longest duration hangar.yml accepts anywhere (a year): longer than any
/// sensible interval or deadline, far below where `Duration` arithmetic overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// GitHub's default `timeout-minutes` for a job (360 minutes).
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(360 * 60);

/// The longest a job may run on a self-hosted runner, as GitHub documents it
/// (5 days). Larger `timeout-minutes` are accepted by GitHub's parser (its
/// corpus even has infinities) and end at this limit, so they do here too.
pub const MAX_JOB_MINUTES: f64 = 5.0 * 24.0 * 60.0;

/// Parses `1h`, `5m`, `30s`, `250ms`, `2d` and concatenations such as `1m30s`.
/// A bare number means seconds. The result is at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration: write it like `30s`, `5m` or `200ms`".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return bounded_secs(secs, text);
    }
    let mut total = 0.0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "invalid duration `{text}`: expected a number, e.g. `30s`, `5m`, `200ms`"
            ));
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| {
            format!("invalid duration `{text}`: write it like `30s`, `5m` or `200ms`")
        })?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let factor = match unit {
            "ms" => 0.001,
            "s" | "" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            other => {
                return Err(format!(
                    "invalid duration `{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        total += value * factor;
    }
    bounded_secs(total, text)
}

/// Seconds as a [`Duration`], refusing what is negative, not a number, or
/// longer than [`MAX_DURATION`].
fn bounded_secs(secs: f64, text: &str) -> Result<Duration, String> {
    if secs.is_nan() || secs < 0.0 {
        return Err(format!(
            "invalid duration `{text}`: it must be zero or more, e.g. `30s`"
        ));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "duration `{text}` is too long: at most {} days",
            MAX_DURATION.as_secs() / 86400
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `1%` or `0.5%` into a fraction (0.01, 0.005). A bare number in [0, 1]
/// is taken as a fraction.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid percentage `{text}`: write it like `1%` or `0.5%`"))?;
    let fraction = v / scale;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(format!("percentage `{text}` is outside 0%..100%"));
    }
    Ok(fraction)
}

/// What a `timeout-minutes` value means once evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timeout {
    /// Run for at most this long.
    Limit(Duration),
    /// Above what a job may run ([`MAX_JOB_MINUTES`]): the limit applies, and
    /// the user is told.
    Capped(Duration),
    /// Zero, negative or not a number: GitHub's runner then sets no timeout of
    /// its own (the job's default applies), and the user is told.
    Ignored,
}

impl Timeout {
    /// The duration to enforce, with `default` for an ignored value.
    pub fn or(self, default: Duration) -> Duration {
        match self {
            Timeout::Limit(d) | Timeout::Capped(d) => d,
            Timeout::Ignored => default,
        }
    }

    /// The warning to show the user, if the value was not taken as written.
    pub fn warning(self, written: &str) -> Option<String> {
        match self {
            Timeout::Limit(_) => None,
            Timeout::Capped(d) => Some(format!(
                "timeout-minutes `{written}` is above the {} minutes a job may run: {} minutes apply",
                MAX_JOB_MINUTES,
                d.as_secs() / 60
            )),
            Timeout::Ignored => Some(format!(
                "timeout-minutes `{written}` is not more than 0 minutes: it is ignored"
            )),
        }
    }
}

/// Reads an evaluated `timeout-minutes` (a number of minutes, fractions
/// allowed). Text that is not a number is an error, as in GitHub's runner.
pub fn timeout_minutes(text: &str) -> Result<Timeout, String> {
    let t = text.trim();
    let minutes: f64 = match t {
        // .NET's spellings, which GitHub's expression results use.
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => t.parse().map_err(|_| {
            format!("timeout-minutes must be a number of minutes, not `{text}` (e.g. `timeout-minutes: 30`)")
        })?,
    };
    Ok(minutes_value(minutes))
}

/// [`timeout_minutes`] for a value that is already a number.
fn minutes_value(minutes: f64) -> Timeout {
    if minutes.is_nan() || minutes <= 0.0 {
        Timeout::Ignored
    } else if minutes > MAX_JOB_MINUTES {
        Timeout::Capped(Duration::from_secs_f64(MAX_JOB_MINUTES * 60.0))
    } else {
        Timeout::Limit(Duration::from_secs_f64(minutes * 60.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_form() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(
            parse_duration("5x")
                .unwrap_err()
                .contains("unknown unit `x`")
        );
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn hostile_durations_are_errors_not_panics() {
        for bad in [
            "1e300",
            "1e18",
            "-1",
            "-5s",
            "NaN",
            "inf",
            "-inf",
            "1e400",
            "99999999999d",
            "1.7976931348623157e308ms",
            "..",
            "1..2s",
            "s",
            "10years",
        ] {
            let r = parse_duration(bad);
            assert!(r.is_err(), "{bad} gave {r:?}");
        }
        assert!(parse_duration("1e300").unwrap_err().contains("too long"));
        assert!(parse_duration("-1").unwrap_err().contains("zero or more"));
        assert_eq!(parse_duration("365d").unwrap(), MAX_DURATION);
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("1%").unwrap(), 0.01);
        assert_eq!(parse_percent("0.5").unwrap(), 0.5);
        for bad in ["150%", "abc", "-1%", "NaN%", "1e400%", ""] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts_follow_the_runner() {
        assert_eq!(
            timeout_minutes("30").unwrap(),
            Timeout::Limit(Duration::from_secs(1800))
        );
        assert_eq!(
            timeout_minutes("0.5").unwrap(),
            Timeout::Limit(Duration::from_secs(30))
        );
        let cap = Duration::from_secs_f64(MAX_JOB_MINUTES * 60.0);
        for huge in ["1e18", "1e300", "Infinity", "1e400"] {
            assert_eq!(
                timeout_minutes(huge).unwrap(),
                Timeout::Capped(cap),
                "{huge}"
            );
        }
        for none in ["0", "-3", "-Infinity", "NaN", "-1e300"] {
            assert_eq!(timeout_minutes(none).unwrap(), Timeout::Ignored, "{none}");
        }
        assert!(
            timeout_minutes("soon")
                .unwrap_err()
                .contains("number of minutes")
        );
        assert!(timeout_minutes("").is_err());
        assert_eq!(
            Timeout::Ignored.or(DEFAULT_JOB_TIMEOUT),
            DEFAULT_JOB_TIMEOUT
        );
        assert!(
            Timeout::Capped(cap)
                .warning("1e18")
                .unwrap()
                .contains("7200")
        );
    }
}
