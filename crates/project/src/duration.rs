//! Durations (`200ms`, `2s`, `5m`, `1h`, `1m30s`) and percentages (`1%`, `0.5%`).
//!
//! The parsing itself is `hangar_units` (one checked parser for every number a
//! user writes); here it is hooked into deserialisation, where serde gives the
//! error its file position.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use hangar_units::{parse_duration, parse_percent};

/// A duration written in YAML as a string (`30s`) or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_duration(&number_or_string(d)?)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// YAML writes `30` and `30s` alike: read either as text.
pub(crate) fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(f64),
        S(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::N(n) => n.to_string(),
        Raw::S(s) => s,
    })
}

impl serde::Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

/// A fraction written as `1%`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_percent(&number_or_string(d)?)
            .map(Percent)
            .map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}%", self.0 * 100.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Probe {
        d: Dur,
    }

    #[test]
    fn hostile_durations_in_yaml_are_errors() {
        let ok: Probe = serde_json::from_str(r#"{"d": 30}"#).unwrap();
        assert_eq!(ok.d.0, Duration::from_secs(30));
        for bad in [r#"{"d": 1e300}"#, r#"{"d": "1e300"}"#, r#"{"d": -1}"#] {
            let err = serde_json::from_str::<Probe>(bad)
                .err()
                .expect(bad)
                .to_string();
            assert!(err.contains("duration"), "{bad}: {err}");
        }
    }
}
