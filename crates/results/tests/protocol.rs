//! The service over real HTTP on loopback, speaking as the toolkit's clients
//! speak (field names, status codes and blob operations read from
//! `@actions/cache` and `@actions/artifact`): scoping, matching, immutability,
//! eviction, the legacy API, and what happens to bad uploads and bad bytes.

use std::sync::Arc;
use std::time::Duration;

use hangar_results::{Config, DirStore, Grant, Running, Service};
use serde_json::{Value, json};

const CACHE: &str = "twirp/github.actions.results.api.v1.CacheService";
const ARTIFACT: &str = "twirp/github.actions.results.api.v1.ArtifactService";

struct Fixture {
    _dir: tempfile::TempDir,
    running: Running,
    http: reqwest::Client,
}

async fn start(tune: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("artifacts"));
    tune(&mut cfg);
    let store = DirStore::open(&dir.path().join("cache")).unwrap();
    let svc = Service::new(Arc::new(store), cfg).unwrap();
    let running = svc.start(([127, 0, 0, 1], 0).into()).await.unwrap();
    Fixture {
        _dir: dir,
        running,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    }
}

fn grant(git_ref: &str) -> Grant {
    Grant::for_ref("o/r", "41", "build", git_ref, None, Some("main"))
}

impl Fixture {
    fn token(&self, g: &Grant) -> String {
        self.running.service.token(g)
    }

    async fn rpc(&self, g: &Grant, path: &str, method: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}/{method}", self.running.url))
            .bearer_auth(self.token(g))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Saves `bytes` under `key` as `@actions/cache` v2 does with a small archive.
    async fn save(&self, g: &Grant, key: &str, bytes: &[u8]) -> (u16, Value) {
        let (s, created) = self
            .rpc(
                g,
                CACHE,
                "CreateCacheEntry",
                json!({"key": key, "version": "v1"}),
            )
            .await;
        if s != 200 {
            return (s, created);
        }
        let url = created["signed_upload_url"].as_str().unwrap();
        let put = self
            .http
            .put(url)
            .header("x-ms-blob-type", "BlockBlob")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            put.status().as_u16(),
            201,
            "Put Blob answers 201 as Azure does"
        );
        self.rpc(
            g,
            CACHE,
            "FinalizeCacheEntryUpload",
            json!({"key": key, "version": "v1", "size_bytes": bytes.len().to_string()}),
        )
        .await
    }

    /// Restores as `@actions/cache` v2 does: the matched key and the bytes.
    async fn restore(&self, g: &Grant, key: &str, restore: &[&str]) -> Option<(String, Vec<u8>)> {
        let (s, r) = self
            .rpc(
                g,
                CACHE,
                "GetCacheEntryDownloadURL",
                json!({"key": key, "restore_keys": restore, "version": "v1"}),
            )
            .await;
        assert_eq!(s, 200, "{r}");
        if r["ok"] != json!(true) {
            return None;
        }
        let body = self
            .http
            .get(r["signed_download_url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        Some((
            r["matched_key"].as_str().unwrap().to_string(),
            body.to_vec(),
        ))
    }
}

#[tokio::test]
async fn saves_and_restores_with_exact_then_prefix_matching() {
    let f = start(|_| {}).await;
    let main = grant("refs/heads/main");
    let (s, r) = f.save(&main, "deps-linux-aaa", b"first").await;
    assert_eq!((s, &r["ok"]), (200, &json!(true)), "{r}");
    assert!(r["entry_id"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    f.save(&main, "deps-linux-bbb", b"second").await;

    assert_eq!(
        f.restore(&main, "deps-linux-aaa", &[]).await.unwrap(),
        ("deps-linux-aaa".into(), b"first".to_vec())
    );
    // A restore key matches by prefix, newest first.
    assert_eq!(
        f.restore(&main, "deps-linux-zzz", &["deps-linux-"])
            .await
            .unwrap()
            .0,
        "deps-linux-bbb"
    );
    // The primary key itself is matched by prefix too, as GitHub does.
    assert_eq!(
        f.restore(&main, "deps-linux-a", &[]).await.unwrap().0,
        "deps-linux-aaa"
    );
    assert!(f.restore(&main, "other", &["nope-"]).await.is_none());
    // Another version (other paths or compression) never matches.
    let (_, r) = f
        .rpc(
            &main,
            CACHE,
            "GetCacheEntryDownloadURL",
            json!({"key": "deps-linux-aaa", "version": "v2"}),
        )
        .await;
    assert_eq!(r["ok"], json!(false));
}

#[tokio::test]
async fn branches_read_their_own_and_the_default_branchs_entries_only() {
    let f = start(|_| {}).await;
    let main = grant("refs/heads/main");
    let feature = grant("refs/heads/feature");
    let other = grant("refs/heads/other");
    f.save(&main, "k-main", b"m").await;
    f.save(&feature, "k-feature", b"f").await;
    assert_eq!(f.restore(&feature, "k-main", &[]).await.unwrap().1, b"m");
    assert!(
        f.restore(&main, "k-feature", &[]).await.is_none(),
        "main never reads a branch"
    );
    assert!(
        f.restore(&other, "k-feature", &[]).await.is_none(),
        "nor a sibling branch"
    );
    // A pull request reads its base branch too.
    let pr = Grant::for_ref(
        "o/r",
        "42",
        "t",
        "refs/pull/7/merge",
        Some("feature"),
        Some("main"),
    );
    assert_eq!(f.restore(&pr, "k-feature", &[]).await.unwrap().1, b"f");
    // The own scope wins over the default branch for the same key.
    f.save(&feature, "k-main", b"feature's own").await;
    assert_eq!(
        f.restore(&feature, "k-main", &[]).await.unwrap().1,
        b"feature's own"
    );
    // Another repository sees nothing.
    let elsewhere = Grant::for_ref("o/other", "1", "j", "refs/heads/main", None, Some("main"));
    assert!(f.restore(&elsewhere, "k-main", &[]).await.is_none());
}

#[tokio::test]
async fn entries_are_immutable() {
    let f = start(|_| {}).await;
    let main = grant("refs/heads/main");
    f.save(&main, "k", b"one").await;
    let (s, r) = f
        .rpc(
            &main,
            CACHE,
            "CreateCacheEntry",
            json!({"key": "k", "version": "v1"}),
        )
        .await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(f.restore(&main, "k", &[]).await.unwrap().1, b"one");
}

#[tokio::test]
async fn no_request_is_served_without_a_valid_token_or_signature() {
    let f = start(|_| {}).await;
    let url = format!("{}{CACHE}/GetCacheEntryDownloadURL", f.running.url);
    let body = json!({"key": "k", "version": "v1"});
    let r = f.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = f
        .http
        .post(&url)
        .bearer_auth("a.b.c")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = f
        .http
        .get(format!(
            "{}_apis/artifactcache/cache?keys=k&version=v1",
            f.running.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A download URL with its signature changed.
    let main = grant("refs/heads/main");
    f.save(&main, "k", b"x").await;
    let (_, r) = f.rpc(&main, CACHE, "GetCacheEntryDownloadURL", body).await;
    let good = r["signed_download_url"].as_str().unwrap();
    let bad = format!("{}0", &good[..good.len() - 1]);
    let bad = if bad == good {
        format!("{}1", &good[..good.len() - 1])
    } else {
        bad
    };
    assert_eq!(
        f.http.get(&bad).send().await.unwrap().status().as_u16(),
        403
    );
    assert_eq!(
        f.http.get(good).send().await.unwrap().status().as_u16(),
        200
    );
}

#[tokio::test]
async fn a_truncated_upload_is_refused_and_leaves_nothing_visible() {
    let f = start(|_| {}).await;
    let main = grant("refs/heads/main");
    let (_, c) = f
        .rpc(
            &main,
            CACHE,
            "CreateCacheEntry",
            json!({"key": "k", "version": "v1"}),
        )
        .await;
    f.http
        .put(c["signed_upload_url"].as_str().unwrap())
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    let (s, r) = f
        .rpc(
            &main,
            CACHE,
            "FinalizeCacheEntryUpload",
            json!({"key": "k", "version": "v1", "size_bytes": "4000"}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        r["msg"]
            .as_str()
            .unwrap()
            .contains("incomplete (1000 of 4000 bytes"),
        "{r}"
    );
    assert!(f.restore(&main, "k", &[]).await.is_none());
    // The key is free again: a good save after a bad one works.
    assert_eq!(f.save(&main, "k", b"good").await.0, 200);
    assert_eq!(f.restore(&main, "k", &[]).await.unwrap().1, b"good");
}

#[tokio::test]
async fn a_corrupt_entry_fails_the_download_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DirStore::open(&dir.path().join("cache")).unwrap());
    let svc = Service::new(store.clone(), Config::new(dir.path().join("a"))).unwrap();
    let running = svc.start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let f = Fixture {
        _dir: tempfile::tempdir().unwrap(),
        running,
        http: reqwest::Client::new(),
    };
    let main = grant("refs/heads/main");
    f.save(&main, "k", &vec![7u8; 3 << 20]).await;
    // Same size, different bytes: only the digest can tell.
    use hangar_results::CacheStore;
    let e = store.entries("o/r").unwrap().pop().unwrap();
    let part = store.blob_path(&e).join("0");
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[(2 << 20) + 5] ^= 1;
    std::fs::write(&part, &bytes).unwrap();
    let (_, r) = f
        .rpc(
            &main,
            CACHE,
            "GetCacheEntryDownloadURL",
            json!({"key": "k", "version": "v1"}),
        )
        .await;
    let resp = f
        .http
        .get(r["signed_download_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.bytes().await.is_err(), "the body must not complete");
    assert!(
        store.entries("o/r").unwrap().is_empty(),
        "the corrupt entry is gone"
    );
    // A truncated blob is caught before any byte is sent.
    f.save(&main, "k2", b"0123456789").await;
    let e = store.entries("o/r").unwrap().pop().unwrap();
    std::fs::write(store.blob_path(&e).join("0"), b"01234").unwrap();
    let (_, r) = f
        .rpc(
            &main,
            CACHE,
            "GetCacheEntryDownloadURL",
            json!({"key": "k2", "version": "v1"}),
        )
        .await;
    let resp = f
        .http
        .get(r["signed_download_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    assert!(resp.text().await.unwrap().contains("corrupt"));
    assert!(store.entries("o/r").unwrap().is_empty());
}

#[tokio::test]
async fn blocks_and_a_block_list_as_the_azure_sdk_uploads_large_archives() {
    let f = start(|_| {}).await;
    let main = grant("refs/heads/main");
    let (_, c) = f
        .rpc(
            &main,
            CACHE,
            "CreateCacheEntry",
            json!({"key": "big", "version": "v1"}),
        )
        .await;
    let url = c["signed_upload_url"].as_str().unwrap().to_string();
    // Staged out of order, committed in order; an extra block is dropped.
    for (id, fill) in [("QkJC", b'b'), ("QUFB", b'a'), ("Q0ND", b'c')] {
        let r = f
            .http
            .put(format!("{url}&comp=block&blockid={id}"))
            .body(vec![fill; 100_000])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    let xml = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><BlockList><Latest>QUFB</Latest><Latest>QkJC</Latest></BlockList>"#;
    let r = f
        .http
        .put(format!("{url}&comp=blocklist"))
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (s, r) = f
        .rpc(
            &main,
            CACHE,
            "FinalizeCacheEntryUpload",
            json!({"key": "big", "version": "v1", "size_bytes": "200000"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (_, bytes) = f.restore(&main, "big", &[]).await.unwrap();
    assert_eq!(bytes.len(), 200_000);
    assert!(
        bytes[..100_000].iter().all(|b| *b == b'a') && bytes[100_000..].iter().all(|b| *b == b'b')
    );
}

#[tokio::test]
async fn a_corrupt_block_of_an_entry_fails_its_download() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DirStore::open(&dir.path().join("cache")).unwrap());
    let svc = Service::new(store.clone(), Config::new(dir.path().join("a"))).unwrap();
    let running = svc.start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let http = reqwest::Client::new();
    let f = Fixture {
        _dir: tempfile::tempdir().unwrap(),
        running,
        http,
    };
    let main = grant("refs/heads/main");
    let (_, c) = f
        .rpc(
            &main,
            CACHE,
            "CreateCacheEntry",
            json!({"key": "blk", "version": "v1"}),
        )
        .await;
    let url = c["signed_upload_url"].as_str().unwrap().to_string();
    for (id, fill) in [("QUFB", b'a'), ("QkJC", b'b')] {
        f.http
            .put(format!("{url}&comp=block&blockid={id}"))
            .body(vec![fill; 2 << 20])
            .send()
            .await
            .unwrap();
    }
    f.http
        .put(format!("{url}&comp=blocklist"))
        .body("<BlockList><Latest>QUFB</Latest><Latest>QkJC</Latest></BlockList>")
        .send()
        .await
        .unwrap();
    let size = (4u64 << 20).to_string();
    let (s, _) = f
        .rpc(
            &main,
            CACHE,
            "FinalizeCacheEntryUpload",
            json!({"key": "blk", "version": "v1", "size_bytes": size}),
        )
        .await;
    assert_eq!(s, 200);
    use hangar_results::CacheStore;
    let e = store.entries("o/r").unwrap().pop().unwrap();
    assert_eq!(e.parts.len(), 2, "one part per block, no copy");
    // The second block's bytes change on disk, its size does not.
    let part = store.blob_path(&e).join("1");
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[0] = b'x';
    std::fs::write(&part, &bytes).unwrap();
    let (_, r) = f
        .rpc(
            &main,
            CACHE,
            "GetCacheEntryDownloadURL",
            json!({"key": "blk", "version": "v1"}),
        )
        .await;
    let resp = f
        .http
        .get(r["signed_download_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(resp.bytes().await.is_err(), "the body must not complete");
    assert!(
        store.entries("o/r").unwrap().is_empty(),
        "the corrupt entry is gone"
    );
}

#[tokio::test]
async fn eviction_by_total_size_removes_the_least_recently_used() {
    let f = start(|c| c.max_total_bytes = 250).await;
    let main = grant("refs/heads/main");
    f.save(&main, "a", &[1; 100]).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    f.save(&main, "b", &[2; 100]).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Using `a` makes `b` the least recently used.
    assert!(f.restore(&main, "a", &[]).await.is_some());
    tokio::time::sleep(Duration::from_millis(5)).await;
    f.save(&main, "c", &[3; 100]).await;
    assert!(f.restore(&main, "b", &[]).await.is_none(), "b was evicted");
    assert!(f.restore(&main, "a", &[]).await.is_some());
    assert!(f.restore(&main, "c", &[]).await.is_some());
}

#[tokio::test]
async fn eviction_by_age() {
    let f = start(|c| c.max_age = Duration::from_millis(200)).await;
    let main = grant("refs/heads/main");
    f.save(&main, "old", b"x").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        f.restore(&main, "old", &[]).await.is_none(),
        "unused past max age"
    );
    f.save(&main, "new", b"y").await;
    assert!(f.restore(&main, "new", &[]).await.is_some());
}

#[tokio::test]
async fn the_legacy_artifactcache_api() {
    let f = start(|_| {}).await;
    let main = grant("refs/heads/main");
    let tok = f.token(&main);
    let base = format!("{}_apis/artifactcache", f.running.url);
    let r = f
        .http
        .get(format!("{base}/cache?keys=leg,leg-&version=v9"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r: Value = f
        .http
        .post(format!("{base}/caches"))
        .bearer_auth(&tok)
        .json(&json!({"key": "leg-1", "version": "v9", "cacheSize": 10}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["cacheId"].as_u64().unwrap();
    // Two ranges, the second first (the client uploads them concurrently).
    for (range, body) in [("bytes 5-9/*", "56789"), ("bytes 0-4/*", "01234")] {
        let r = f
            .http
            .patch(format!("{base}/caches/{id}"))
            .bearer_auth(&tok)
            .header("Content-Range", range)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    let r = f
        .http
        .post(format!("{base}/caches/{id}"))
        .bearer_auth(&tok)
        .json(&json!({"size": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text().await);
    // A second reservation of the same key is refused.
    let r = f
        .http
        .post(format!("{base}/caches"))
        .bearer_auth(&tok)
        .json(&json!({"key": "leg-1", "version": "v9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let r: Value = f
        .http
        .get(format!("{base}/cache?keys=leg,leg-&version=v9"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["cacheKey"], "leg-1");
    let bytes = f
        .http
        .get(r["archiveLocation"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"0123456789");
    // The v2 protocol sees the same entry.
    assert_eq!(
        f.rpc(
            &main,
            CACHE,
            "GetCacheEntryDownloadURL",
            json!({"key": "leg-1", "version": "v9"})
        )
        .await
        .1["ok"],
        json!(true)
    );

    // A commit before every byte arrived is refused.
    let r: Value = f
        .http
        .post(format!("{base}/caches"))
        .bearer_auth(&tok)
        .json(&json!({"key": "leg-2", "version": "v9"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["cacheId"].as_u64().unwrap();
    f.http
        .patch(format!("{base}/caches/{id}"))
        .bearer_auth(&tok)
        .header("Content-Range", "bytes 0-4/*")
        .body("01234")
        .send()
        .await
        .unwrap();
    let r = f
        .http
        .post(format!("{base}/caches/{id}"))
        .bearer_auth(&tok)
        .json(&json!({"size": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("incomplete"));
    let r = f
        .http
        .get(format!("{base}/cache?keys=leg-2&version=v9"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

#[tokio::test]
async fn artifacts_create_upload_finalize_list_download_delete() {
    let f = start(|_| {}).await;
    let up = grant("refs/heads/main");
    let ids =
        |g: &Grant| json!({"workflow_run_backend_id": g.run, "workflow_job_run_backend_id": g.job});
    let with = |g: &Grant, extra: Value| {
        let mut v = ids(g);
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let (s, c) = f
        .rpc(
            &up,
            ARTIFACT,
            "CreateArtifact",
            with(
                &up,
                json!({"name": "dist", "version": 7, "mime_type": "application/zip"}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    let url = c["signed_upload_url"].as_str().unwrap();
    f.http
        .put(format!("{url}&comp=block&blockid=QUFB"))
        .body("PK-zip-bytes")
        .send()
        .await
        .unwrap();
    f.http
        .put(format!("{url}&comp=blocklist"))
        .body("<BlockList><Latest>QUFB</Latest></BlockList>")
        .send()
        .await
        .unwrap();
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(b"PK-zip-bytes"));
    let (s, fin) = f
        .rpc(
            &up,
            ARTIFACT,
            "FinalizeArtifact",
            with(
                &up,
                json!({"name": "dist", "size": "12", "hash": format!("sha256:{digest}")}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{fin}");
    // Another job of the same run lists and downloads it.
    let down = Grant::for_ref("o/r", "41", "deploy", "refs/heads/main", None, None);
    let (_, list) = f.rpc(&down, ARTIFACT, "ListArtifacts", ids(&down)).await;
    let a = &list["artifacts"][0];
    assert_eq!(a["name"], "dist");
    assert_eq!(a["size"], "12");
    assert_eq!(a["digest"], format!("sha256:{digest}"));
    assert_eq!(a["database_id"], fin["artifact_id"]);
    let (_, u) = f
        .rpc(
            &down,
            ARTIFACT,
            "GetSignedArtifactURL",
            with(&down, json!({"name": "dist"})),
        )
        .await;
    let r = f
        .http
        .get(u["signed_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert_eq!(&r.bytes().await.unwrap()[..], b"PK-zip-bytes");
    assert!(
        f.running.service.artifacts("41")[0]
            .path
            .ends_with("dist.zip")
    );
    // Names are unique per run.
    let (s, _) = f
        .rpc(
            &up,
            ARTIFACT,
            "CreateArtifact",
            with(&up, json!({"name": "dist", "version": 7})),
        )
        .await;
    assert_eq!(s, 409);
    // Another run cannot see it.
    let stranger = Grant::for_ref("o/r", "99", "x", "refs/heads/main", None, None);
    let (s, _) = f.rpc(&stranger, ARTIFACT, "ListArtifacts", ids(&up)).await;
    assert_eq!(s, 403);
    let (_, list) = f
        .rpc(&stranger, ARTIFACT, "ListArtifacts", ids(&stranger))
        .await;
    assert_eq!(list["artifacts"], json!([]));
    let (s, d) = f
        .rpc(
            &down,
            ARTIFACT,
            "DeleteArtifact",
            with(&down, json!({"name": "dist"})),
        )
        .await;
    assert_eq!((s, &d["artifact_id"]), (200, &fin["artifact_id"]));
    let (_, list) = f.rpc(&down, ARTIFACT, "ListArtifacts", ids(&down)).await;
    assert_eq!(list["artifacts"], json!([]));
}

#[tokio::test]
async fn an_artifact_whose_digest_differs_is_not_kept() {
    let f = start(|_| {}).await;
    let g = grant("refs/heads/main");
    let ids = json!({"workflow_run_backend_id": g.run, "workflow_job_run_backend_id": g.job, "name": "x"});
    let (_, c) = f.rpc(&g, ARTIFACT, "CreateArtifact", ids.clone()).await;
    f.http
        .put(c["signed_upload_url"].as_str().unwrap())
        .body("abc")
        .send()
        .await
        .unwrap();
    let mut fin = ids.clone();
    fin["size"] = json!("3");
    fin["hash"] = json!(format!("sha256:{}", "0".repeat(64)));
    let (s, r) = f.rpc(&g, ARTIFACT, "FinalizeArtifact", fin).await;
    assert_eq!(s, 400);
    assert!(
        r["msg"].as_str().unwrap().contains("hash to sha256:"),
        "{r}"
    );
    let (_, list) = f.rpc(&g, ARTIFACT, "ListArtifacts", ids).await;
    assert_eq!(list["artifacts"], json!([]));
    // Bad names are refused before anything is stored.
    let (s, _) = f
        .rpc(&g, ARTIFACT, "CreateArtifact", json!({"workflow_run_backend_id": g.run, "workflow_job_run_backend_id": g.job, "name": "../up"}))
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn kept_artifacts_outlive_a_restart_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let mut cfg = Config::new(dir.path().join("artifacts"));
        cfg.artifacts_per_run = true;
        let store = DirStore::open(&dir.path().join("cache")).unwrap();
        Service::new(Arc::new(store), cfg).unwrap()
    };
    let running = open().start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let f = Fixture {
        _dir: tempfile::tempdir().unwrap(),
        running,
        http: reqwest::Client::new(),
    };
    let g = grant("refs/heads/main");
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    for (name, exp) in [("keep", None), ("brief", Some(soon.to_rfc3339()))] {
        let mut req = json!({"workflow_run_backend_id": g.run, "workflow_job_run_backend_id": g.job, "name": name});
        if let Some(e) = exp {
            req["expires_at"] = json!(e);
        }
        let (_, c) = f.rpc(&g, ARTIFACT, "CreateArtifact", req.clone()).await;
        f.http
            .put(c["signed_upload_url"].as_str().unwrap())
            .body("PK..")
            .send()
            .await
            .unwrap();
        req["size"] = json!("4");
        let (s, r) = f.rpc(&g, ARTIFACT, "FinalizeArtifact", req).await;
        assert_eq!(s, 200, "{r}");
    }
    drop(f);
    // A new service over the same directory: both are there.
    let again = open();
    let names = |svc: &Service| {
        let mut n: Vec<String> = svc.artifacts("41").into_iter().map(|a| a.name).collect();
        n.sort();
        n
    };
    assert_eq!(names(&again), ["brief", "keep"]);
    assert!(dir.path().join("artifacts/41/keep.zip").is_file());
    drop(again);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // Past its retention, an artifact is gone with its bytes.
    let later = open();
    assert_eq!(names(&later), ["keep"]);
    assert!(!dir.path().join("artifacts/41/brief.zip").exists());
}

#[tokio::test]
async fn uploads_are_bounded_in_size_across_blocks_and_in_number() {
    let f = start(|c| c.max_total_bytes = 100).await;
    let main = grant("refs/heads/main");
    let (_, c) = f
        .rpc(
            &main,
            CACHE,
            "CreateCacheEntry",
            json!({"key": "k", "version": "v1"}),
        )
        .await;
    let url = c["signed_upload_url"].as_str().unwrap().to_string();
    let put = |id: &str, n: usize| {
        f.http
            .put(format!("{url}&comp=block&blockid={id}"))
            .body(vec![0u8; n])
            .send()
    };
    assert_eq!(put("QUFB", 60).await.unwrap().status().as_u16(), 201);
    // Each block is under the limit; together they are not.
    assert_eq!(put("QkJC", 60).await.unwrap().status().as_u16(), 413);
    // A single "Put Blob" over the limit too.
    let r = f.http.put(&url).body(vec![0u8; 101]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 413);

    // At most 256 uploads open at once.
    let mut refused = None;
    for i in 0..300 {
        let (s, r) = f
            .rpc(
                &main,
                CACHE,
                "CreateCacheEntry",
                json!({"key": format!("many-{i}"), "version": "v1"}),
            )
            .await;
        if s != 200 {
            refused = Some((i, s, r));
            break;
        }
    }
    let (i, s, r) = refused.expect("an upload beyond the bound was accepted");
    assert_eq!((i, s), (255, 429), "{r}");
}
