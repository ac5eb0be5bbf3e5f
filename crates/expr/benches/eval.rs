//! Expression micro-benchmark: `cargo bench -p hangar-expr --bench eval`.
//!
//! Target (issue 2): at least 1 million evaluations per second on one core of
//! `github.ref == 'refs/heads/main' && matrix.os != 'windows'`, parsed once.
//! Side by side, in the same run, with the field crate `github-actions-expressions`
//! (zizmor), which can only evaluate constant expressions: both evaluate the
//! same constant expression, and both parse the same text.
//!
//! Plain `std::time` (no criterion) keeps the build light. Exits non-zero when
//! our figure misses the target.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hangar_expr::{Contexts, DefaultHost, parse};
use serde_json::json;

const TARGET_PER_SEC: f64 = 1_000_000.0;

/// Runs `f` in batches until `budget` has elapsed; returns calls per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    // Warm-up.
    for _ in 0..10_000 {
        f();
    }
    let start = Instant::now();
    let mut calls: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..10_000 {
            f();
        }
        calls += 10_000;
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

fn github_context() -> serde_json::Value {
    // A realistic `github` context: lookups happen among ~30 keys.
    json!({
        "action": "__run", "action_path": "", "action_ref": "", "action_repository": "",
        "actor": "octocat", "actor_id": "1", "api_url": "https://api.github.com",
        "base_ref": "", "env": "/tmp/env", "event_name": "push", "event_path": "/tmp/event.json",
        "graphql_url": "https://api.github.com/graphql", "head_ref": "", "job": "build",
        "path": "/tmp/path", "ref": "refs/heads/main", "ref_name": "main", "ref_protected": false,
        "ref_type": "branch", "repository": "octo/hello", "repository_id": "42",
        "repository_owner": "octo", "retention_days": "90", "run_attempt": "1", "run_id": "123",
        "run_number": "7", "server_url": "https://github.com", "sha": "2ce6b095f4cceb616efed52266e3e3c0367ba795",
        "triggering_actor": "octocat", "workflow": "CI", "workspace": "/home/runner/work/hello",
        "event": {"ref": "refs/heads/main", "commits": [{"message": "x"}]}
    })
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1500),
    );
    let contexts = Contexts::from_json(&json!({
        "github": github_context(),
        "matrix": {"os": "ubuntu-latest", "node": 20},
        "env": {"CI": "true"},
    }));
    let host = DefaultHost;

    let simple = "github.ref == 'refs/heads/main' && matrix.os != 'windows'";
    let expr = parse(simple).expect("parses");
    assert_eq!(
        expr.eval(&contexts, &host).ok(),
        Some(hangar_expr::Value::Bool(true))
    );
    let ours_ctx = rate(budget, || {
        black_box(black_box(&expr).eval(black_box(&contexts), &host).ok());
    });

    let heavier = "contains(github.event.commits.*.message, 'x') && startsWith(github.ref, 'refs/heads/') && format('{0}-{1}', matrix.os, matrix.node) != ''";
    let heavier_expr = parse(heavier).expect("parses");
    let ours_heavier = rate(budget, || {
        black_box(
            black_box(&heavier_expr)
                .eval(black_box(&contexts), &host)
                .ok(),
        );
    });

    let constant = "'refs/heads/main' == 'refs/heads/main' && 'ubuntu-latest' != 'windows'";
    let ours_const_expr = parse(constant).expect("parses");
    let ours_const = rate(budget, || {
        black_box(
            black_box(&ours_const_expr)
                .eval(black_box(&contexts), &host)
                .ok(),
        );
    });
    let peer_const_expr = github_actions_expressions::Expr::parse(constant).expect("peer parses");
    assert!(peer_const_expr.consteval().is_some());
    let peer_const = rate(budget, || {
        black_box(black_box(&peer_const_expr).consteval());
    });

    let ours_parse = rate(budget, || {
        black_box(parse(black_box(simple)).ok());
    });
    let peer_parse = rate(budget, || {
        black_box(github_actions_expressions::Expr::parse(black_box(simple)).ok());
    });

    let m = |r: f64| r / 1e6;
    println!(
        "expression benchmark (one core, {} ms per figure)",
        budget.as_millis()
    );
    println!(
        "  eval  `{simple}` with contexts: {:.2} M/s (target >= 1.00 M/s)",
        m(ours_ctx)
    );
    println!(
        "  eval  filter + functions expression: {:.2} M/s",
        m(ours_heavier)
    );
    println!(
        "  eval  constant expression: hangar-expr {:.2} M/s, github-actions-expressions consteval {:.2} M/s, ratio {:.2}x",
        m(ours_const),
        m(peer_const),
        ours_const / peer_const
    );
    println!(
        "  parse `{simple}`: hangar-expr {:.2} M/s, github-actions-expressions {:.2} M/s, ratio {:.2}x",
        m(ours_parse),
        m(peer_parse),
        ours_parse / peer_parse
    );
    if ours_ctx < TARGET_PER_SEC {
        eprintln!(
            "FAIL: {:.0} evaluations/s is below the 1,000,000/s target",
            ours_ctx
        );
        std::process::exit(1);
    }
    println!("PASS: {:.0} evaluations/s", ours_ctx);
}
