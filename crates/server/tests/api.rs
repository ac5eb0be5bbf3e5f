//! The API as a script sees it, against a real server on loopback: every
//! error is JSON with a stable `code` (axum's own rejections included), and
//! lists page with an opaque cursor, filter runs, and count what matches.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const WF: &str = "on: [push, pull_request]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo ok}]\n";

/// Sends a request and returns its status, `code` and whole JSON body,
/// asserting the body is JSON whatever the status.
async fn call(r: reqwest::RequestBuilder) -> (u16, String, Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    assert!(
        ctype.starts_with("application/json"),
        "{status} came as `{ctype}`: {text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    (status, v["code"].as_str().unwrap_or("").to_string(), v)
}

#[tokio::test]
async fn every_error_is_json_with_a_stable_code() {
    let s = start().await;
    let (_, token) = {
        let (c, v) = s
            .post("/api/v1/tokens", json!({"name": "reader", "role": "read"}))
            .await;
        assert_eq!(c, 201, "{v}");
        (v["id"].clone(), v["token"].as_str().unwrap().to_string())
    };
    let h = &s.http;
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(&s.token);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (admin(h.get(s.url("/api/v1/nowhere"))), 404, "not_found"),
        (h.get(s.url("/no/such/page")), 404, "not_found"),
        (
            admin(h.delete(s.url("/api/v1/runs"))),
            405,
            "method_not_allowed",
        ),
        (admin(h.get(s.url("/api/v1/runs/999"))), 404, "not_found"),
        (
            admin(h.get(s.url("/api/v1/runs?limit=ten"))),
            400,
            "invalid_query",
        ),
        (
            admin(h.get(s.url("/api/v1/runs?pull_request=x"))),
            400,
            "invalid_query",
        ),
        // A conclusion the store never writes matched nothing before; now
        // it is refused with the accepted values.
        (
            admin(h.get(s.url("/api/v1/runs?conclusion=succeeded"))),
            400,
            "invalid_query",
        ),
        (admin(h.get(s.url("/api/v1/runs/abc"))), 400, "invalid_path"),
        (
            admin(h.get(s.url("/api/v1/runs?cursor=forged"))),
            400,
            "invalid_cursor",
        ),
        (
            admin(h.get(s.url("/api/v1/repos?cursor=%00"))),
            400,
            "invalid_cursor",
        ),
        (
            admin(h.post(s.url("/api/v1/repos")))
                .header("content-type", "application/json")
                .body("{\"name\": "),
            400,
            "invalid_json",
        ),
        (
            admin(h.post(s.url("/api/v1/repos"))).json(&json!({"name": 3})),
            422,
            "invalid_body",
        ),
        (
            admin(h.post(s.url("/api/v1/repos"))).body("{}"),
            415,
            "unsupported_media_type",
        ),
        (h.get(s.url("/api/v1/runs")), 401, "unauthorized"),
        (
            h.get(s.url("/api/v1/runs")).bearer_auth("not-a-token"),
            401,
            "unauthorized",
        ),
        (
            h.post(s.url("/api/v1/repos"))
                .bearer_auth(&token)
                .json(&json!({"name": "x", "clone_url": "y"})),
            403,
            "forbidden",
        ),
        (
            admin(h.post(s.url("/api/v1/runs/1/artifacts/big")))
                .body(vec![0u8; 64 * 1024 * 1024 + 1]),
            413,
            "payload_too_large",
        ),
    ];
    for (i, (req, status, code)) in cases.into_iter().enumerate() {
        let (got, got_code, v) = call(req).await;
        assert_eq!((got, got_code.as_str()), (status, code), "case {i}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "case {i} says what went wrong: {v}"
        );
    }
    s.server.stop().await;
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// GET a list page: its items, `X-Total-Count` and the `Link: rel="next"` target.
async fn page(s: &TestServer, path: &str) -> (Vec<Value>, i64, Option<String>) {
    let r = s
        .http
        .get(s.url(path))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    let total = header(&r, "x-total-count").unwrap().parse().unwrap();
    let next = header(&r, "link").map(|l| {
        let (target, rel) = l.split_once(">; ").unwrap();
        assert_eq!(rel, "rel=\"next\"");
        target.trim_start_matches('<').to_string()
    });
    let items = r.json::<Value>().await.unwrap().as_array().unwrap().clone();
    (items, total, next)
}

/// Every item of a list, page by page, following the `Link` headers.
async fn walk(s: &TestServer, first: &str) -> (Vec<Value>, i64, usize) {
    let (mut all, total, mut next) = page(s, first).await;
    let mut pages = 1;
    while let Some(path) = next {
        let (items, t, n) = page(s, &path).await;
        assert_eq!(t, total, "the total does not change between pages");
        all.extend(items);
        next = n;
        pages += 1;
    }
    (all, total, pages)
}

fn ids(runs: &[Value]) -> Vec<i64> {
    runs.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn runs_page_with_a_cursor_and_filter_like_githubs_list() {
    let (repo, first) = repo_with(&[(".github/workflows/ci.yml", WF)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let mut shas = vec![first];
    for i in 0..3 {
        shas.push(commit(repo.path(), &[("f.txt", &format!("{i}"))]).unwrap());
    }
    for (i, sha) in shas.iter().enumerate() {
        let (c, v) = s.push("acme/app", repo.path(), sha, &format!("d{i}")).await;
        assert_eq!(c, 202, "{v}");
    }
    // A push to `dev` and a pull request from the head branch `topic`.
    let mut dev: Value =
        serde_json::from_slice(&push_body("acme/app", repo.path(), &shas[3])).unwrap();
    dev["ref"] = json!("refs/heads/dev");
    dev["pusher"] = json!({"name": "dev-pusher"});
    dev["sender"] = json!({"login": "dev-pusher"});
    let dev = serde_json::to_vec(&dev).unwrap();
    assert_eq!(
        s.hook("github", &dev, &sign(&dev), "dev", "push").await.0,
        202
    );
    let pr = serde_json::to_vec(&json!({
        "action": "opened", "number": 7,
        "pull_request": {"number": 7, "author_association": "MEMBER", "user": {"login": "octo"},
                         "head": {"sha": shas[2], "ref": "topic", "repo": {"full_name": "acme/app", "fork": false}},
                         "base": {"ref": "main"}},
        "repository": {"full_name": "acme/app", "default_branch": "main"}, "sender": {"login": "octo"}
    }))
    .unwrap();
    let (c, v) = s
        .hook("github", &pr, &sign(&pr), "pr7", "pull_request")
        .await;
    assert_eq!(c, 202, "{v}");
    let all = s.runs().await;
    assert_eq!(all.len(), 6);
    for r in &all {
        s.wait_run(r["id"].as_i64().unwrap(), Duration::from_secs(60))
            .await;
    }

    // Two at a time: every run once, newest first, on three pages.
    let (runs, total, pages) = walk(&s, "/api/v1/runs?limit=2").await;
    assert_eq!((total, pages), (6, 3));
    let mut expected = ids(&all);
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids(&runs), expected);
    // A run that arrives between pages does not shift the next page.
    let (first_page, _, next) = page(&s, "/api/v1/runs?limit=3").await;
    let extra = commit(repo.path(), &[("g.txt", "x")]).unwrap();
    assert_eq!(s.push("acme/app", repo.path(), &extra, "late").await.0, 202);
    let (second_page, total, _) = page(&s, &next.unwrap()).await;
    assert_eq!(total, 7, "the total counts the new run");
    let mut both = ids(&first_page);
    both.extend(ids(&second_page));
    assert_eq!(both, expected, "the page after the cursor is unchanged");

    let count = |q: &'static str| {
        let s = &s;
        async move {
            let (items, total, _) = walk(s, &format!("/api/v1/runs?{q}")).await;
            assert_eq!(items.len() as i64, total, "{q}");
            items
        }
    };
    assert_eq!(count("branch=main").await.len(), 5);
    assert_eq!(count("branch=refs/heads/main&limit=1").await.len(), 5);
    assert_eq!(count("branch=dev").await.len(), 1);
    assert_eq!(
        count("branch=topic").await.len(),
        1,
        "a pull request's head branch"
    );
    assert_eq!(count("pull_request=7").await.len(), 1);
    assert_eq!(count("pull_request=8").await.len(), 0);
    assert_eq!(count("event=pull_request").await.len(), 1);
    assert_eq!(count("actor=dev-pusher").await.len(), 1);
    assert_eq!(count("workflow=ci.yml").await.len(), 7);
    assert_eq!(count("workflow=.github/workflows/ci.yml").await.len(), 7);
    assert_eq!(count("workflow=other.yml").await.len(), 0);
    // shas[3] was pushed to main and to dev; shas[2] to main and in the pull request.
    let short = &shas[3][..8];
    let by_commit = count(Box::leak(format!("commit={short}").into_boxed_str())).await;
    assert_eq!(by_commit.len(), 2);
    assert_eq!(count("commit=%25").await.len(), 0, "`%` is no wildcard");
    assert_eq!(count("conclusion=success&status=completed").await.len(), 6);
    assert_eq!(count("conclusion=failure").await.len(), 0);
    assert_eq!(count("repo=999").await.len(), 0);

    // The other lists page the same way.
    for i in 0..3 {
        let (c, _) = s
            .post(
                "/api/v1/tokens",
                json!({"name": format!("t{i}"), "role": "read"}),
            )
            .await;
        assert_eq!(c, 201);
    }
    let (tokens, total, pages) = walk(&s, "/api/v1/tokens?limit=2").await;
    assert_eq!((tokens.len() as i64, pages), (total, 2));
    let (audit, total, _) = walk(&s, "/api/v1/audit?limit=1").await;
    assert_eq!(audit.len() as i64, total);
    assert!(total >= 4, "{audit:?}");
    let (deliveries, total, _) = walk(&s, "/api/v1/deliveries?limit=4").await;
    assert_eq!((deliveries.len() as i64, total), (total, 7));
    s.server.stop().await;
}

/// `/readyz` needs no token and answers 200 with the schema version while the
/// database answers at this build's version; once the server drains it
/// answers 503 `draining`, while `/healthz` and the API are still served.
#[tokio::test]
async fn readiness_is_public_and_ends_when_the_server_drains() {
    let s = start().await;
    let r = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(v["schema_version"], hangar_store::SCHEMA_VERSION, "{v}");
    s.server.drain();
    let r = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "draining", "{v}");
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(s.get("/api/v1/runs").await.is_array());
    s.server.stop().await;
}
