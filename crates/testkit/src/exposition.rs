//! The parts of a strict metrics-exposition reader that Prometheus' text
//! format 0.0.4 and OpenMetrics 1.0 share: names, one sample line (series,
//! labels with their escapes, value) and histogram consistency. Each test
//! keeps its own rules for metadata (`# HELP`/`# TYPE`/`# EOF`), which is
//! where the two formats differ.

use std::collections::BTreeMap;

/// A sample: name, labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

/// A metric or label name as both formats allow it.
pub fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        })
}

/// One sample line, `name{label="value",...} value`, read strictly: valid
/// label names, quoted values with only `\\`, `\"` and `\n` escapes, no
/// label twice, a float value (`+Inf`/`-Inf` included).
pub fn parse_sample(line: &str) -> Result<Sample, String> {
    let (series, value) = line.rsplit_once(' ').ok_or("no value")?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("bad value `{v}`"))?,
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Ok((series.to_string(), BTreeMap::new(), value));
    };
    let body = rest.strip_suffix('}').ok_or("unclosed labels")?;
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if !name_ok(&key) || key.contains(':') {
            return Err(format!("bad label name `{key}`"));
        }
        if chars.next() != Some('"') {
            return Err("label value not quoted".into());
        }
        let mut v = String::new();
        loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('\\') => v.push('\\'),
                    Some('"') => v.push('"'),
                    Some('n') => v.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some(c) => v.push(c),
            }
        }
        if labels.insert(key.clone(), v).is_some() {
            return Err(format!("label `{key}` twice"));
        }
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(c) => return Err(format!("`{c}` after a label")),
        }
    }
    Ok((name.to_string(), labels, value))
}

/// Every series of each histogram family (by `types`: family → type) has
/// cumulative buckets with increasing `le`, ending at `+Inf` equal to its
/// `_count`.
pub fn check_histograms(
    types: &BTreeMap<String, String>,
    samples: &[Sample],
) -> Result<(), String> {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for (name, labels, value) in samples {
            let mut rest = labels.clone();
            let le = rest.remove("le");
            let key = format!("{rest:?}");
            if *name == format!("{family}_bucket") {
                let le = le.ok_or("a bucket without `le`")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().map_err(|_| format!("bad le `{le}`"))?
                };
                buckets.entry(key).or_default().push((le, *value));
            } else if *name == format!("{family}_count") {
                counts.insert(key, *value);
            }
        }
        for (key, b) in buckets {
            if !b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
                return Err(format!("{family}{key}: buckets not cumulative: {b:?}"));
            }
            if b.last().map(|l| l.0) != Some(f64::INFINITY)
                || counts.get(&key) != b.last().map(|l| &l.1)
            {
                return Err(format!("{family}{key}: +Inf bucket is not _count"));
            }
        }
    }
    Ok(())
}
