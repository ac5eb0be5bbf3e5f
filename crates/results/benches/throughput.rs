//! Cache save and restore of 200 MB through the service on loopback, as
//! `@actions/cache` v2 does it: `CreateCacheEntry`, the archive in 64 MiB
//! "Put Block"s sent 8 at a time and a "Put Block List" (what the Azure SDK
//! does above 128 MiB), `FinalizeCacheEntryUpload`; then
//! `GetCacheEntryDownloadURL` and one GET streamed to a file. The target is
//! 200 MB/s each way; each figure is printed with its ratio to it.
//! Run: `benches/cache-service.sh` (or `cargo bench -p hangar-results --bench throughput`).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_results::{Config, DirStore, Grant, Service};
use serde_json::{Value, json};

const SIZE: usize = 200 * 1000 * 1000;
const BLOCK: usize = 64 << 20;
const TARGET_MB_S: f64 = 200.0;
const CACHE: &str = "twirp/github.actions.results.api.v1.CacheService";

/// Incompressible bytes (a cache archive is already zstd-compressed).
fn payload() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(SIZE);
    while v.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(SIZE);
    v
}

async fn rpc(http: &reqwest::Client, base: &str, token: &str, method: &str, body: Value) -> Value {
    let r = http
        .post(format!("{base}{CACHE}/{method}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("rpc");
    assert!(r.status().is_success(), "{method}: {}", r.status());
    r.json().await.expect("json")
}

fn report(what: &str, d: Duration) {
    let mb_s = SIZE as f64 / 1e6 / d.as_secs_f64();
    println!(
        "{what:<8} 200 MB in {:>6.0} ms = {mb_s:>7.1} MB/s  (target {TARGET_MB_S} MB/s: x{:.2})",
        d.as_secs_f64() * 1000.0,
        mb_s / TARGET_MB_S
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "load average {} on {} cores (figures scale with what else runs)",
            load.split(' ').next().unwrap_or("?"),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        );
    }
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::open(&dir.path().join("cache")).expect("store");
        let svc =
            Service::new(Arc::new(store), Config::new(dir.path().join("a"))).expect("service");
        let running = svc.start(([127, 0, 0, 1], 0).into()).await.expect("start");
        let base = running.url.clone();
        let grant = Grant::for_ref("o/r", "1", "bench", "refs/heads/main", None, Some("main"));
        let token = running.service.token(&grant);
        let http = reqwest::Client::new();
        // Sliced per block without a copy: the client's own cost stays out of the figures.
        let data = axum::body::Bytes::from(payload());
        let archive = dir.path().join("restored.tzst");

        for round in 0..3 {
            let key = format!("bench-{round}");
            let t = Instant::now();
            let created = rpc(
                &http,
                &base,
                &token,
                "CreateCacheEntry",
                json!({"key": key, "version": "v"}),
            )
            .await;
            let url = created["signed_upload_url"]
                .as_str()
                .expect("url")
                .to_string();
            let mut ids = Vec::new();
            let mut puts = Vec::new();
            for (i, start) in (0..SIZE).step_by(BLOCK).enumerate() {
                use base64::Engine as _;
                let id = base64::engine::general_purpose::STANDARD.encode(format!("block-{i:06}"));
                let chunk = data.slice(start..(start + BLOCK).min(SIZE));
                let req = http
                    .put(format!(
                        "{url}&comp=block&blockid={}",
                        id.replace('=', "%3D")
                            .replace('+', "%2B")
                            .replace('/', "%2F")
                    ))
                    .body(chunk);
                ids.push(id);
                puts.push(tokio::spawn(async move {
                    req.send().await.expect("put").status()
                }));
            }
            for p in puts {
                assert_eq!(p.await.expect("join").as_u16(), 201);
            }
            let blocks = t.elapsed();
            let xml: String = ids
                .iter()
                .map(|i| format!("<Latest>{i}</Latest>"))
                .collect();
            let r = http
                .put(format!("{url}&comp=blocklist"))
                .body(format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><BlockList>{xml}</BlockList>"
                ))
                .send()
                .await
                .expect("blocklist");
            assert_eq!(r.status().as_u16(), 201);
            let listed = t.elapsed();
            let fin = rpc(
                &http,
                &base,
                &token,
                "FinalizeCacheEntryUpload",
                json!({"key": key, "version": "v", "size_bytes": SIZE.to_string()}),
            )
            .await;
            assert_eq!(fin["ok"], json!(true));
            let save = t.elapsed();

            let t = Instant::now();
            let got = rpc(
                &http,
                &base,
                &token,
                "GetCacheEntryDownloadURL",
                json!({"key": key, "version": "v"}),
            )
            .await;
            let mut resp = http
                .get(got["signed_download_url"].as_str().expect("url"))
                .send()
                .await
                .expect("get");
            let mut out = std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(&archive).expect("file"),
            );
            let mut n = 0usize;
            while let Some(c) = resp.chunk().await.expect("chunk") {
                n += c.len();
                out.write_all(&c).expect("write");
            }
            out.flush().expect("flush");
            assert_eq!(n, SIZE);
            let restore = t.elapsed();
            println!(
                "round {round}: blocks {} ms, block list {} ms, finalize {} ms",
                blocks.as_millis(),
                (listed - blocks).as_millis(),
                (save - listed).as_millis()
            );
            report("save", save);
            report("restore", restore);
        }
    });
}
