//! Cron schedules a user writes: a workflow's `on.schedule[].cron` and
//! hangar.yml's `recovery.schedule`, read by one parser and evaluated by one
//! engine (croner), in UTC as GitHub runs its schedules unless a workflow's
//! entry names a `timezone:` ([`zone`], [`Cron::in_zone`]).
//!
//! GitHub accepts POSIX cron: five fields (minute, hour, day of month, month,
//! day of week), each a list of `*`, numbers, ranges and `/` steps, months and
//! weekdays also by their three-letter names; not `@daily` and friends. croner
//! accepts more (`L`, `W`, `#`, `?`, nicknames), so the text is checked here
//! first, field by field, and an error names the field and the part that is
//! wrong. `Seconds::Allowed` accepts a sixth field of seconds in front, for
//! hangar.yml schedules shorter than a minute; workflows keep GitHub's five.

use chrono::{DateTime, Utc};
use jiff::Timestamp;
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};

/// Whether a leading seconds field may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seconds {
    /// GitHub's five fields only (workflow `schedule:`).
    Refused,
    /// Five fields, or six with seconds first (hangar.yml).
    Allowed,
}

/// A checked cron expression, evaluated in UTC or in the zone it was given.
#[derive(Debug, Clone)]
pub struct Cron {
    text: String,
    cron: croner::Cron,
    zone: Option<Zone>,
}

/// An IANA time zone a schedule runs in (`America/New_York`), found in the
/// time zone database by [`zone`].
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// The name as written.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Why a time zone name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError {
    pub message: String,
}

/// The names of the time zone database [`zone`] looks names up in, for a
/// "did you mean" (a checker's; this crate stays below the diagnostics).
pub fn zone_names() -> Vec<String> {
    names_in(jiff::tz::db())
}

fn names_in(db: &TimeZoneDatabase) -> Vec<String> {
    db.available().map(|n| n.to_string()).collect()
}

/// The IANA time zone `name` (as GitHub's `timezone:` takes it: `Europe/Paris`,
/// `Asia/Kolkata`, `UTC`). Looked up as the database does, letter case aside.
///
/// The database is the system's (`TZDIR`, `/usr/share/zoneinfo`), else the
/// copy built in: jiff picks it once per process.
pub fn zone(name: &str) -> Result<Zone, ZoneError> {
    zone_in(jiff::tz::db(), name)
}

fn zone_in(db: &TimeZoneDatabase, name: &str) -> Result<Zone, ZoneError> {
    let refuse = |message: String| Err(ZoneError { message });
    if name.trim().is_empty() {
        return refuse(
            "a time zone must not be empty: write an IANA name such as `America/New_York`, or leave `timezone:` out for UTC".into(),
        );
    }
    // The names are the database's file names: a workflow is hostile, and
    // nothing else (`..`, absolute paths, odd bytes) reaches the lookup.
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
        && name.split('/').all(|part| !part.is_empty());
    if !plain {
        return refuse(format!(
            "`{name}` is not an IANA time zone name (letters, digits, `/`, `_`, `+`, `-`), such as `America/New_York`"
        ));
    }
    match db.get(name) {
        Ok(tz) => Ok(Zone {
            name: name.to_string(),
            tz,
        }),
        Err(_) => refuse(format!(
            "unknown time zone `{name}`: write an IANA name such as `America/New_York`"
        )),
    }
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
        zone: None,
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

    /// The same schedule read on the wall clock of `zone`.
    pub fn in_zone(mut self, zone: Zone) -> Cron {
        self.zone = Some(zone);
        self
    }

    /// The zone the schedule runs in; `None` for UTC.
    pub fn zone(&self) -> Option<&Zone> {
        self.zone.as_ref()
    }

    /// Whether the schedule fires at this second (unix seconds).
    pub fn matches(&self, unix_secs: i64) -> bool {
        if self.zone.is_some() {
            return unix_secs
                .checked_sub(1)
                .and_then(|before| self.next_after(before))
                == Some(unix_secs);
        }
        DateTime::<Utc>::from_timestamp(unix_secs, 0)
            .is_some_and(|t| self.cron.is_time_matching(&t).unwrap_or(false))
    }

    /// The first time the schedule fires strictly after `unix_secs`, or
    /// `None` when it never does again (`0 0 30 2 *`).
    pub fn next_after(&self, unix_secs: i64) -> Option<i64> {
        if let Some(zone) = &self.zone {
            return self.next_in_zone(&zone.tz, unix_secs);
        }
        let t = DateTime::<Utc>::from_timestamp(unix_secs, 0)?;
        self.cron
            .find_next_occurrence(&t, false)
            .ok()
            .map(|t| t.timestamp())
    }

    /// The next firing in `tz`: croner walks the zone's wall clock (kept as
    /// a UTC `DateTime`, which has no gaps or repeats), and each wall time
    /// it finds becomes the instant it stands for, with GitHub's rule for a
    /// DST gap: "scheduled workflows in skipped hours advance to the next
    /// valid time" (2:30 on the spring-forward night fires at 3:00, the
    /// instant of the change; several skipped times fire once there). For
    /// the repeated hour of a fall-back GitHub says nothing; each wall time
    /// fires once, at its first occurrence, as cron daemons do for a time
    /// written out, so a nightly job never runs twice.
    fn next_in_zone(&self, tz: &TimeZone, after: i64) -> Option<i64> {
        let offset = tz.to_offset(Timestamp::from_second(after).ok()?).seconds();
        let mut wall = DateTime::<Utc>::from_timestamp(after.checked_add(offset.into())?, 0)?;
        // Candidates at or before `after` come only from a repeated hour
        // already fired (at most an hour of minutes, or of seconds for a
        // six-field cron); the bound only stops a runaway.
        for _ in 0..4_000 {
            wall = self.cron.find_next_occurrence(&wall, false).ok()?;
            let at = instant_of(tz, wall.timestamp())?;
            if at > after {
                return Some(at);
            }
        }
        None
    }
}

/// The instant (unix seconds) at which `tz`'s wall clock shows `wall` (the
/// wall time's fields read as UTC): the one instant; in a gap, the instant
/// the clock skips it (the next valid time); in a repeat, the first.
fn instant_of(tz: &TimeZone, wall: i64) -> Option<i64> {
    let civil = TimeZone::UTC.to_datetime(Timestamp::from_second(wall).ok()?);
    match tz.to_ambiguous_timestamp(civil).offset() {
        AmbiguousOffset::Unambiguous { offset } => Some(wall - i64::from(offset.seconds())),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, the wall time lands before the
            // change; the change is the first transition after it.
            let before_change = Timestamp::from_second(wall - i64::from(after.seconds())).ok()?;
            tz.following(before_change)
                .next()
                .map(|t| t.timestamp().as_second())
        }
        AmbiguousOffset::Fold { before, after } => {
            Some((wall - i64::from(before.seconds())).min(wall - i64::from(after.seconds())))
        }
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

    /// Unix seconds of an RFC 3339 instant.
    fn at(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_second()
    }

    fn in_zone(cron: &str, name: &str) -> Cron {
        parse(cron, Seconds::Refused)
            .unwrap()
            .in_zone(zone(name).unwrap())
    }

    /// The firings strictly after `from`, `n` of them.
    fn firings(c: &Cron, from: &str, n: usize) -> Vec<i64> {
        let mut t = at(from);
        (0..n)
            .map(|_| {
                t = c.next_after(t).unwrap();
                t
            })
            .collect()
    }

    #[test]
    fn new_york_mornings_follow_the_offset_of_the_season() {
        // GitHub's own example: 5:30 on weekdays in New York.
        let c = in_zone("30 5 * * 1-5", "America/New_York");
        // Monday 2024-01-08 is winter time (UTC-5), Monday 2024-07-08
        // summer time (UTC-4).
        assert_eq!(
            c.next_after(at("2024-01-08T00:00:00Z")),
            Some(at("2024-01-08T10:30:00Z"))
        );
        assert_eq!(
            c.next_after(at("2024-07-08T00:00:00Z")),
            Some(at("2024-07-08T09:30:00Z"))
        );
        assert!(c.matches(at("2024-01-08T10:30:00Z")));
        assert!(!c.matches(at("2024-01-08T05:30:00Z")), "not in UTC");
        assert!(!c.matches(at("2024-01-08T10:31:00Z")));
        // Friday's run, then Monday's: the weekdays are New York's.
        assert_eq!(
            firings(&c, "2024-01-12T11:00:00Z", 1),
            [at("2024-01-15T10:30:00Z")]
        );
        // The same text without a zone keeps to UTC.
        let utc = parse("30 5 * * 1-5", Seconds::Refused).unwrap();
        assert!(utc.zone().is_none());
        assert_eq!(
            utc.next_after(at("2024-01-08T00:00:00Z")),
            Some(at("2024-01-08T05:30:00Z"))
        );
    }

    #[test]
    fn a_time_the_spring_forward_skips_fires_at_the_change() {
        // 2024-03-10 in New York: 02:00 EST became 03:00 EDT (07:00Z), so
        // 02:30 does not exist that night: it fires at 03:00, as GitHub says.
        let c = in_zone("30 2 * * *", "America/New_York");
        assert_eq!(
            firings(&c, "2024-03-09T00:00:00Z", 3),
            [
                at("2024-03-09T07:30:00Z"),
                at("2024-03-10T07:00:00Z"),
                at("2024-03-11T06:30:00Z"),
            ]
        );
        assert!(c.matches(at("2024-03-10T07:00:00Z")));
        // Several skipped times, and 03:00 itself, are one firing at the
        // change; the schedule goes on at 03:15.
        let c = in_zone("*/15 * * * *", "America/New_York");
        assert_eq!(
            firings(&c, "2024-03-10T06:40:00Z", 3),
            [
                at("2024-03-10T06:45:00Z"),
                at("2024-03-10T07:00:00Z"),
                at("2024-03-10T07:15:00Z"),
            ]
        );
    }

    #[test]
    fn a_repeated_fall_back_hour_fires_once() {
        // 2024-11-03 in New York: 02:00 EDT became 01:00 EST (06:00Z), so
        // 01:30 happens twice; it fires the first time only.
        let c = in_zone("30 1 * * *", "America/New_York");
        assert_eq!(
            firings(&c, "2024-11-03T00:00:00Z", 2),
            [at("2024-11-03T05:30:00Z"), at("2024-11-04T06:30:00Z")]
        );
        assert!(c.matches(at("2024-11-03T05:30:00Z")));
        assert!(!c.matches(at("2024-11-03T06:30:00Z")), "the repeat");
        // Asked from inside the repeat, the next firing is after it.
        assert_eq!(
            c.next_after(at("2024-11-03T06:10:00Z")),
            Some(at("2024-11-04T06:30:00Z"))
        );
        // Every half hour: 01:00 and 01:30 once each, then 02:00 EST.
        let c = in_zone("*/30 * * * *", "America/New_York");
        assert_eq!(
            firings(&c, "2024-11-03T04:45:00Z", 3),
            [
                at("2024-11-03T05:00:00Z"),
                at("2024-11-03T05:30:00Z"),
                at("2024-11-03T07:00:00Z"),
            ]
        );
    }

    #[test]
    fn half_hour_offsets_and_utc_zones() {
        // Kolkata is UTC+05:30 all year.
        let c = in_zone("30 5 * * *", "Asia/Kolkata");
        assert_eq!(
            c.next_after(at("2024-07-07T12:00:00Z")),
            Some(at("2024-07-08T00:00:00Z"))
        );
        let c = in_zone("0 3 * * *", "UTC");
        assert_eq!(
            c.next_after(at("2024-01-01T00:00:00Z")),
            Some(at("2024-01-01T03:00:00Z"))
        );
        assert_eq!(c.zone().map(Zone::name), Some("UTC"));
    }

    #[test]
    fn unknown_zones_say_what_to_write() {
        let e = zone("America/New_Yrok").unwrap_err();
        assert_eq!(
            e.message,
            "unknown time zone `America/New_Yrok`: write an IANA name such as `America/New_York`"
        );
        assert!(zone_names().iter().any(|n| n == "America/New_York"));
        assert!(zone("").unwrap_err().message.contains("must not be empty"));
        // A workflow names files of the database by this: nothing else
        // reaches the lookup.
        for hostile in [
            "../../etc/passwd",
            "/etc/localtime",
            "America//New_York",
            "Europe/Paris\n",
        ] {
            assert!(
                zone(hostile)
                    .unwrap_err()
                    .message
                    .contains("is not an IANA time zone name"),
                "{hostile}"
            );
        }
        assert!(zone("Europe/Paris").is_ok());
    }

    /// A machine without a system database (a fresh Debian without
    /// `tzdata`) gets the copy built in, which has the zones and their rules.
    #[test]
    fn the_built_in_database_has_the_zones_and_their_rules() {
        let db = TimeZoneDatabase::bundled();
        assert!(!db.is_definitively_empty());
        let c = parse("30 2 * * *", Seconds::Refused)
            .unwrap()
            .in_zone(zone_in(&db, "America/New_York").unwrap());
        assert_eq!(
            c.next_after(at("2024-03-10T00:00:00Z")),
            Some(at("2024-03-10T07:00:00Z"))
        );
        let names = names_in(&db);
        assert!(names.len() > 300, "{}", names.len());
        assert!(names.iter().any(|n| n == "Asia/Kolkata"));
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
