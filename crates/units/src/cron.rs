//! Cron schedules a user writes: a workflow's `on.schedule[].cron` and
//! hangar.yml's `recovery.schedule`, read by one parser and evaluated by one
//! engine (croner), always in UTC as GitHub runs its schedules.
//!
//! GitHub accepts POSIX cron: five fields (minute, hour, day of month, month,
//! day of week), each a list of `*`, numbers, ranges and `/` steps, months and
//! weekdays also by their three-letter names; not `@daily` and friends. croner
//! accepts more (`L`, `W`, `#`, `?`, nicknames), so the text is checked here
//! first, field by field, and an error names the field and the part that is
//! wrong. `Seconds::Allowed` accepts a sixth field of seconds in front, for
//! hangar.yml schedules shorter than a minute; workflows keep GitHub's five.

use chrono::{DateTime, Utc};

/// Whether a leading seconds field may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seconds {
    /// GitHub's five fields only (workflow `schedule:`).
    Refused,
    /// Five fields, or six with seconds first (hangar.yml).
    Allowed,
}

/// A checked cron expression.
#[derive(Debug, Clone)]
pub struct Cron {
    text: String,
    cron: croner::Cron,
}

/// One field: its name, its bounds, and the names it also accepts (index =
/// value, from `first_name`).
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    first_name: u32,
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        first_name: 0,
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        first_name: 0,
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
        first_name: 0,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
        first_name: 1,
    },
    // 7 is Sunday too, as in every POSIX cron.
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: WEEKDAYS,
        first_name: 0,
    },
];

/// Parses `text` (surrounding blanks ignored). The error says what is wrong
/// and how to write it; callers place it at the value's line and column.
pub fn parse(text: &str, seconds: Seconds) -> Result<Cron, String> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let fields: Vec<&Field> = match (parts.len(), seconds) {
        (5, _) => FIELDS.iter().collect(),
        (6, Seconds::Allowed) => std::iter::once(&SECOND).chain(FIELDS.iter()).collect(),
        (_, Seconds::Refused) => {
            return Err(format!(
                "cron `{text}` must have 5 fields (minute hour day month weekday)"
            ));
        }
        (_, Seconds::Allowed) => {
            return Err(format!(
                "cron `{text}` must have 5 fields (minute hour day month weekday), or 6 with seconds first"
            ));
        }
    };
    for (part, field) in parts.iter().zip(&fields) {
        check_field(part, field).map_err(|e| format!("cron `{text}`: {e}"))?;
    }
    let normal = parts.join(" ");
    let mut builder = croner::Cron::new(&normal);
    if parts.len() == 6 {
        builder.with_seconds_required();
    }
    // What passed the checks above is POSIX cron, which croner reads; should
    // it still refuse, its reason is the best there is.
    let cron = builder.parse().map_err(|e| format!("cron `{text}`: {e}"))?;
    Ok(Cron {
        text: text.trim().to_string(),
        cron,
    })
}

/// One field: a comma-separated list of `*`, `N`, `N-M`, each with an
/// optional `/STEP`.
fn check_field(part: &str, field: &Field) -> Result<(), String> {
    let range = format!("{}-{}", field.min, field.max);
    for item in part.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(n) if n >= 1 && n <= field.max.max(1) => {}
                _ => {
                    return Err(format!(
                        "{} step `/{step}` in `{item}` must be a number from 1 to {}",
                        field.name,
                        field.max.max(1)
                    ));
                }
            }
        }
        if base == "*" {
            continue;
        }
        let (from, to) = match base.split_once('-') {
            Some((a, b)) => (a, Some(b)),
            None => (base, None),
        };
        let from = value(from, field, item, &range)?;
        if let Some(to) = to {
            let to = value(to, field, item, &range)?;
            if to < from {
                return Err(format!(
                    "{} range `{base}` runs backwards: write the smaller value first",
                    field.name
                ));
            }
        }
    }
    Ok(())
}

/// A number or name of `field`, within its bounds.
fn value(text: &str, field: &Field, item: &str, range: &str) -> Result<u32, String> {
    if let Ok(n) = text.parse::<u32>() {
        if n < field.min || n > field.max {
            return Err(format!("{} `{n}` is out of range {range}", field.name));
        }
        return Ok(n);
    }
    if let Some(i) = field
        .names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
    {
        return Ok(i as u32 + field.first_name);
    }
    let names = if field.names.is_empty() {
        String::new()
    } else {
        format!(
            " or a name ({}–{})",
            field.names[0],
            field.names[field.names.len() - 1]
        )
    };
    Err(format!(
        "{} `{item}` is not cron: use `*`, a number {range}{names}, a range `A-B`, a list `A,B` or a step `*/N`",
        field.name
    ))
}

impl Cron {
    /// The expression as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the schedule fires at this second (unix seconds, UTC).
    pub fn matches(&self, unix_secs: i64) -> bool {
        DateTime::<Utc>::from_timestamp(unix_secs, 0)
            .is_some_and(|t| self.cron.is_time_matching(&t).unwrap_or(false))
    }

    /// The first time the schedule fires strictly after `unix_secs` (UTC),
    /// or `None` when it never does again (`0 0 30 2 *`).
    pub fn next_after(&self, unix_secs: i64) -> Option<i64> {
        let t = DateTime::<Utc>::from_timestamp(unix_secs, 0)?;
        self.cron
            .find_next_occurrence(&t, false)
            .ok()
            .map(|t| t.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_704_067_200;

    #[test]
    fn matches_in_utc_with_names_ranges_steps_and_sunday_as_7() {
        let c = |s: &str| parse(s, Seconds::Refused).unwrap();
        assert!(c("0 0 * * *").matches(MONDAY));
        assert!(c("0 0 * * 1").matches(MONDAY));
        assert!(c("0 0 * * mon").matches(MONDAY));
        assert!(c("0 0 * JAN MON-FRI").matches(MONDAY));
        assert!(c("*/15 0 1 1 *").matches(MONDAY));
        assert!(!c("30 0 * * *").matches(MONDAY));
        assert!(!c("0 0 * * 7").matches(MONDAY));
        assert!(c("0 0 * * 7").matches(MONDAY - 86_400), "Sunday");
        assert!(
            !c("0 0 * * 1").matches(MONDAY + 1),
            "a minute's first second"
        );
    }

    #[test]
    fn next_after_is_strictly_later() {
        let daily = parse("0 3 * * *", Seconds::Refused).unwrap();
        assert_eq!(daily.next_after(MONDAY), Some(MONDAY + 3 * 3600));
        assert_eq!(
            daily.next_after(MONDAY + 3 * 3600),
            Some(MONDAY + 27 * 3600)
        );
        let every2 = parse("*/2 * * * * *", Seconds::Allowed).unwrap();
        assert_eq!(every2.next_after(MONDAY), Some(MONDAY + 2));
        assert_eq!(every2.next_after(MONDAY + 1), Some(MONDAY + 2));
        // Valid field by field, never due: an answer, not a hang.
        assert_eq!(
            parse("0 0 31 2 *", Seconds::Refused)
                .unwrap()
                .next_after(MONDAY),
            None
        );
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let e = |s: &str, sec| parse(s, sec).unwrap_err();
        assert_eq!(
            e("* * * *", Seconds::Refused),
            "cron `* * * *` must have 5 fields (minute hour day month weekday)"
        );
        assert!(e("0 * * * * *", Seconds::Refused).contains("must have 5 fields"));
        assert!(e("@daily", Seconds::Allowed).contains("or 6 with seconds first"));
        assert_eq!(
            e("61 * * * *", Seconds::Refused),
            "cron `61 * * * *`: minute `61` is out of range 0-59"
        );
        assert!(e("0 24 * * *", Seconds::Refused).contains("hour `24` is out of range 0-23"));
        assert!(e("0 0 0 * *", Seconds::Refused).contains("day of month `0`"));
        assert!(e("0 0 * 13 *", Seconds::Refused).contains("month `13`"));
        assert!(e("0 0 L * *", Seconds::Refused).contains("day of month `L` is not cron"));
        assert!(e("0 0 * * 5#2", Seconds::Refused).contains("day of week `5#2` is not cron"));
        assert!(e("0 0 * * FOO", Seconds::Refused).contains("a name (SUN–SAT)"));
        assert!(e("*/0 * * * *", Seconds::Refused).contains("step `/0`"));
        assert!(e("5-1 * * * *", Seconds::Refused).contains("runs backwards"));
        assert!(e("60 * * * * *", Seconds::Allowed).contains("second `60`"));
    }
}
