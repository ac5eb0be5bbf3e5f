//! The Grafana dashboard in the repository queries only what the router
//! exports: every metric name in every PromQL expression (panels and
//! template variables) is a family of `metrics::METRICS` (a histogram's
//! `_bucket`, `_sum` or `_count` included), and every family is shown.

use std::collections::BTreeSet;

use hangar_router::metrics::METRICS;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/grafana/hangar-delivery.json"
);

/// Every PromQL expression of the dashboard.
fn expressions(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) if s.contains('(') => {
                        out.push(s.clone())
                    }
                    _ => expressions(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| expressions(i, out)),
        _ => {}
    }
}

/// The metric names an expression reads: identifiers left once label
/// matchers, strings, ranges, variables, grouping clauses, numbers, function
/// calls and keywords are taken out.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    const KEYWORDS: [&str; 11] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
    ];
    // Aggregations may be followed by `by (...)` before their parenthesis.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    // Grafana's `label_values(metric, label)`: the label is not a metric.
    let expr = match expr.strip_prefix("label_values(") {
        Some(rest) => rest.rsplit_once(',').map_or(rest, |(m, _)| m),
        None => expr,
    };
    // Matchers, ranges and strings go first (they hold label names and values).
    let mut plain = String::new();
    let mut depth: Option<char> = None;
    for c in expr.chars() {
        match (depth, c) {
            (None, '{') => depth = Some('}'),
            (None, '[') => depth = Some(']'),
            (None, '"') => depth = Some('"'),
            (Some(end), c) if c == end => {
                depth = None;
                plain.push(' ');
            }
            (Some(_), _) => {}
            (None, c) => plain.push(c),
        }
    }
    if depth.is_some() {
        return Err(format!("unbalanced `{expr}`"));
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut after_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' || c.is_ascii_digit() || c == '.' {
            // A variable or a number: skip the whole token.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_$.".contains(chars[i]))
            {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if AGGREGATIONS.contains(&word.as_str()) {
                continue;
            }
            if KEYWORDS.contains(&word.as_str()) {
                after_grouping = matches!(word.as_str(), "by" | "without" | "on" | "ignoring");
                continue;
            }
            if next == Some(&'(') && !after_grouping {
                continue; // a function or an aggregation
            }
            if !after_grouping {
                names.insert(word);
            }
            continue;
        }
        if c == ')' {
            after_grouping = false;
        }
        i += 1;
    }
    Ok(names)
}

#[test]
fn the_reader_finds_metric_names_and_nothing_else() {
    let names = metric_names(
        "sum by (service, le) (rate(a_b_bucket{env=\"$env\",x=~\"y z\"}[$__rate_interval])) / on (le) group_left c:d offset 5m > 0.5",
    )
    .unwrap();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a_b_bucket", "c:d"]);
    let names = metric_names("label_values(m{env=\"$env\"}, service)").unwrap();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["m"]);
    let names =
        metric_names("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) + typo_total")
            .unwrap();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["typo_total", "x_bucket"]
    );
}

#[test]
fn every_query_of_the_dashboard_reads_only_exported_metrics() {
    let text = std::fs::read_to_string(DASHBOARD).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut exported = BTreeSet::new();
    for (name, kind, _) in METRICS {
        exported.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                exported.insert(format!("{name}{suffix}"));
            }
        }
    }
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr).unwrap();
        assert!(!names.is_empty(), "no metric in `{expr}`");
        for name in names {
            assert!(
                exported.contains(&name),
                "the dashboard reads `{name}`, which the router does not export (in `{expr}`)"
            );
            used.insert(name);
        }
    }
    for (name, _, _) in METRICS {
        assert!(
            used.iter().any(|u| u.starts_with(name)),
            "the dashboard shows nothing of `{name}`"
        );
    }
    // Imported as is: the data source is a variable, not an id of someone's Grafana.
    assert!(!text.contains("DS_PROMETHEUS"));
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
    }
}
