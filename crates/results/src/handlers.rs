//! The HTTP endpoints: Twirp JSON for the cache and artifact services, the
//! legacy `_apis/artifactcache` API, and the signed blob URLs.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::blob::{self, Refused, Target, Upload};
use crate::storage::{CacheEntry, Part};
use crate::token::Grant;
use crate::{Artifact, Service, now_ms};

/// Uploads open at once, across all jobs of the service.
const MAX_PENDING_UPLOADS: usize = 256;
/// Azure's limit of blocks staged for one blob.
const MAX_BLOCKS: usize = 50_000;

pub(crate) fn router(svc: Service) -> Router {
    Router::new()
        .route("/twirp/{service}/{method}", post(twirp))
        .route("/_apis/artifactcache/cache", get(legacy_get))
        .route(
            "/_apis/artifactcache/caches",
            post(legacy_reserve).get(legacy_list),
        )
        .route(
            "/_apis/artifactcache/caches/{id}",
            axum::routing::patch(legacy_patch).post(legacy_commit),
        )
        .route("/blob/up/{id}", put(blob_put))
        .route("/blob/{kind}/{id}", get(blob_get))
        .with_state(svc)
}

/// A Twirp error: `{"code": ..., "msg": ...}` with its HTTP status.
fn twirp_error(status: u16, msg: impl Into<String>) -> Response {
    let code = match status {
        400 => "invalid_argument",
        401 => "unauthenticated",
        403 => "permission_denied",
        404 => "not_found",
        409 => "already_exists",
        413 => "resource_exhausted",
        _ => "internal",
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({"code": code, "msg": msg.into()}))).into_response()
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        twirp_error(self.0, self.1)
    }
}

impl Service {
    fn grant(&self, headers: &HeaderMap) -> Result<Grant, Refused> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Refused(
                    401,
                    "no runtime token (Authorization: Bearer ACTIONS_RUNTIME_TOKEN)".into(),
                )
            })?;
        self.inner
            .signer
            .verify(auth.trim(), now_ms() / 1000)
            .map_err(|e| Refused(401, format!("the runtime token is refused: {e}")))
    }

    /// A signed URL on the host the request came to (`Host`), else on the
    /// address the service listens on.
    fn signed_url(&self, headers: &HeaderMap, kind: &str, id: &str) -> String {
        let exp = now_ms() / 1000 + self.inner.cfg.token_ttl.as_secs() as i64;
        let sig = self.inner.signer.url_sig(&format!("{kind}:{id}"), exp);
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.bytes().all(|b| {
                        b.is_ascii_graphic() && b != b'/' && b != b'?' && b != b'#' && b != b'@'
                    })
            });
        let base = match host {
            Some(h) => format!("http://{h}/"),
            None => self.base_url().to_string(),
        };
        format!("{base}blob/{kind}/{id}?se={exp}&sig={sig}")
    }

    fn new_upload(&self, target: Target) -> Result<String, Refused> {
        let id = format!("{:x}", self.next_id());
        let up = Upload::new(self.inner.cache.staging_dir(), &id, target);
        let mut ups = self.inner.uploads.lock().unwrap_or_else(|e| e.into_inner());
        // An upload never finalized within a token's lifetime never will be:
        // its job is gone. Its files go, so nothing half-written stays.
        let stale = now_ms() - self.inner.cfg.token_ttl.as_millis() as i64;
        ups.retain(|_, u| {
            let keep = u.created_ms >= stale;
            if !keep {
                u.discard();
            }
            keep
        });
        // Each upload may stage up to the size limit on disk: a bound on how
        // many are open bounds what a misbehaving job can fill.
        if ups.len() >= MAX_PENDING_UPLOADS {
            return Err(Refused(
                429,
                format!(
                    "{MAX_PENDING_UPLOADS} uploads are in progress; finish or abandon some first"
                ),
            ));
        }
        ups.insert(id.clone(), up);
        Ok(id)
    }

    /// Takes the upload that `pred` picks out of the pending ones.
    fn take_upload(&self, pred: impl Fn(&Upload) -> bool) -> Option<Upload> {
        let mut ups = self.inner.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let id = ups.iter().find(|(_, u)| pred(u)).map(|(k, _)| k.clone())?;
        ups.remove(&id)
    }

    fn pending(&self, pred: impl Fn(&Upload) -> bool) -> bool {
        self.inner
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(pred)
    }

    async fn cache_entries(&self, repository: &str) -> Result<Vec<CacheEntry>, Refused> {
        let store = self.inner.cache.clone();
        let repo = repository.to_string();
        tokio::task::spawn_blocking(move || store.entries(&repo))
            .await
            .map_err(|e| Refused(500, e.to_string()))?
            .map_err(|e| Refused(500, format!("cannot read the cache: {e}")))
    }

    /// GitHub's matching: in each readable scope in turn (own ref, PR base,
    /// default branch), the key exactly, then the newest entry the key
    /// prefixes, then each restore key the same way; only entries of the
    /// same version match.
    async fn find_entry(
        &self,
        grant: &Grant,
        version: &str,
        keys: &[String],
    ) -> Result<Option<CacheEntry>, Refused> {
        let all = self.cache_entries(&grant.repository).await?;
        let now = now_ms();
        let max_age = self.inner.cfg.max_age.as_millis() as i64;
        for scope in &grant.read_scopes {
            let mut here: Vec<&CacheEntry> = all
                .iter()
                .filter(|e| &e.scope == scope && e.version == version)
                .filter(|e| now - e.last_used_ms <= max_age)
                .collect();
            here.sort_by_key(|e| std::cmp::Reverse(e.created_ms));
            for key in keys {
                if let Some(e) = here.iter().find(|e| &e.key == key) {
                    return Ok(Some((*e).clone()));
                }
                if let Some(e) = here.iter().find(|e| e.key.starts_with(key.as_str())) {
                    return Ok(Some((*e).clone()));
                }
            }
        }
        Ok(None)
    }

    async fn touch(&self, e: &CacheEntry) {
        let store = self.inner.cache.clone();
        let e = e.clone();
        let _ = tokio::task::spawn_blocking(move || store.touch(&e, now_ms())).await;
    }

    /// Publishes a finished cache upload, then evicts by age and total size.
    async fn publish(
        &self,
        up: Upload,
        size: u64,
        parts: Vec<Part>,
    ) -> Result<CacheEntry, Refused> {
        let Target::Cache {
            repository,
            scope,
            key,
            version,
            legacy_id,
        } = up.target.clone()
        else {
            return Err(Refused(500, "not a cache upload".into()));
        };
        let now = now_ms();
        let entry = CacheEntry {
            id: legacy_id.unwrap_or_else(|| self.next_id()),
            repository,
            scope,
            key,
            version,
            size,
            parts,
            created_ms: now,
            last_used_ms: now,
        };
        let store = self.inner.cache.clone();
        let cfg = self.inner.cfg.clone();
        let e2 = entry.clone();
        let published = tokio::task::spawn_blocking(move || {
            let r = store.publish(&e2, &up.data);
            up.discard();
            if matches!(r, Ok(true)) {
                evict(&*store, &cfg, &e2);
            }
            r
        })
        .await
        .map_err(|e| Refused(500, e.to_string()))?
        .map_err(|e| Refused(500, format!("cannot store the cache entry: {e}")))?;
        if !published {
            return Err(Refused(
                409,
                format!(
                    "a cache entry for key {} already exists in this scope; entries are immutable",
                    entry.key
                ),
            ));
        }
        Ok(entry)
    }
}

/// Removes entries unused for longer than `max_age`, then the least recently
/// used of `keep`'s repository until its total fits `max_total_bytes` (`keep`,
/// just saved, goes last).
fn evict(store: &dyn crate::CacheStore, cfg: &crate::Config, keep: &CacheEntry) {
    let Ok(all) = store.all_entries() else { return };
    let now = now_ms();
    let max_age = cfg.max_age.as_millis() as i64;
    let mut live = Vec::new();
    for e in all {
        if now - e.last_used_ms > max_age {
            let _ = store.remove(&e);
        } else if e.repository == keep.repository {
            live.push(e);
        }
    }
    live.sort_by_key(|e| (e.id == keep.id, e.last_used_ms));
    let mut total: u64 = live.iter().map(|e| e.size).sum();
    for e in &live {
        if total <= cfg.max_total_bytes {
            break;
        }
        if store.remove(e).is_ok() {
            total -= e.size;
        }
    }
}

/// Keys are at most 512 characters and hold no comma (the legacy API joins them with commas).
fn check_key(key: &str) -> Result<(), Refused> {
    if key.is_empty() || key.len() > 512 || key.contains(',') {
        return Err(Refused(
            400,
            format!("invalid cache key {key:?}: 1 to 512 characters, no comma"),
        ));
    }
    Ok(())
}

fn check_version(v: &str) -> Result<(), Refused> {
    if v.is_empty() || v.len() > 512 {
        return Err(Refused(
            400,
            "a cache version is 1 to 512 characters".into(),
        ));
    }
    Ok(())
}

/// int64 fields arrive as JSON strings (proto3 JSON) or numbers.
fn int64(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A field by its proto name, or its JSON (camelCase) name.
fn field<'a>(body: &'a Value, snake: &str) -> Option<&'a Value> {
    body.get(snake).or_else(|| {
        let mut camel = String::new();
        let mut up = false;
        for c in snake.chars() {
            if c == '_' {
                up = true;
            } else if up {
                camel.extend(c.to_uppercase());
                up = false;
            } else {
                camel.push(c);
            }
        }
        body.get(&camel)
    })
}

fn str_field(body: &Value, name: &str) -> String {
    field(body, name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn twirp(
    State(svc): State<Service>,
    Path((service, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let grant = match svc.grant(&headers) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return twirp_error(400, "the request body is not a JSON object"),
    };
    let res = match (service.as_str(), method.as_str()) {
        ("github.actions.results.api.v1.CacheService", m) => {
            cache_rpc(&svc, &grant, &headers, m, &body).await
        }
        ("github.actions.results.api.v1.ArtifactService", m) => {
            artifact_rpc(&svc, &grant, &headers, m, &body).await
        }
        _ => Err(Refused(404, format!("no such service: {service}"))),
    };
    match res {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn cache_rpc(
    svc: &Service,
    grant: &Grant,
    headers: &HeaderMap,
    method: &str,
    body: &Value,
) -> Result<Value, Refused> {
    let key = str_field(body, "key");
    let version = str_field(body, "version");
    match method {
        "CreateCacheEntry" => {
            check_key(&key)?;
            check_version(&version)?;
            let entries = svc.cache_entries(&grant.repository).await?;
            let same = |scope: &str, k: &str, v: &str| {
                scope == grant.write_scope && k == key && v == version
            };
            if entries.iter().any(|e| same(&e.scope, &e.key, &e.version))
                || svc.pending(|u| {
                    matches!(&u.target, Target::Cache { repository, scope, key: k, version: v, .. }
                    if repository == &grant.repository && same(scope, k, v))
                })
            {
                return Err(Refused(
                    409,
                    format!(
                        "a cache entry for key {key} is already saved or being saved in this scope"
                    ),
                ));
            }
            let id = svc.new_upload(Target::Cache {
                repository: grant.repository.clone(),
                scope: grant.write_scope.clone(),
                key,
                version,
                legacy_id: None,
            })?;
            Ok(json!({"ok": true, "signed_upload_url": svc.signed_url(headers, "up", &id)}))
        }
        "FinalizeCacheEntryUpload" => {
            let size = field(body, "size_bytes").and_then(int64).unwrap_or(-1);
            let up = svc
                .take_upload(|u| matches!(&u.target, Target::Cache { repository, scope, key: k, version: v, legacy_id: None }
                    if repository == &grant.repository && scope == &grant.write_scope && k == &key && v == &version))
                .ok_or_else(|| Refused(404, format!("no upload in progress for cache key {key}")))?;
            let (got, parts) = completed(
                &up,
                size,
                &format!("cache key {key}"),
                "the entry is not saved",
            )?;
            let e = svc.publish(up, got, parts).await?;
            Ok(json!({"ok": true, "entry_id": e.id.to_string()}))
        }
        "GetCacheEntryDownloadURL" => {
            check_version(&version)?;
            let mut keys = vec![key];
            if let Some(Value::Array(r)) = field(body, "restore_keys") {
                keys.extend(r.iter().filter_map(Value::as_str).map(str::to_string));
            }
            if keys.len() > 10 {
                return Err(Refused(400, "at most 10 keys".into()));
            }
            for k in &keys {
                check_key(k)?;
            }
            match svc.find_entry(grant, &version, &keys).await? {
                Some(e) => {
                    svc.touch(&e).await;
                    Ok(json!({
                        "ok": true,
                        "signed_download_url": svc.signed_url(headers, "cache", &e.id.to_string()),
                        "matched_key": e.key,
                    }))
                }
                None => Ok(json!({"ok": false, "signed_download_url": "", "matched_key": ""})),
            }
        }
        other => Err(Refused(404, format!("CacheService has no method {other}"))),
    }
}

/// Artifact names as GitHub accepts them (the client checks the same).
fn check_artifact_name(name: &str) -> Result<(), Refused> {
    const BAD: &[char] = &[
        '"', ':', '<', '>', '|', '*', '?', '\r', '\n', '\\', '/', '\0',
    ];
    if name.is_empty() || name.len() > 256 || name.contains(BAD) || name == "." || name == ".." {
        return Err(Refused(
            400,
            format!(
                "invalid artifact name {name:?}: 1 to 256 characters, none of \" : < > | * ? \\ / or line breaks"
            ),
        ));
    }
    Ok(())
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn artifact_json(a: &Artifact) -> Value {
    json!({
        "workflow_run_backend_id": a.run,
        "workflow_job_run_backend_id": a.job,
        "database_id": a.id.to_string(),
        "name": a.name,
        "size": a.size.to_string(),
        "created_at": rfc3339(a.created_ms),
        "digest": format!("sha256:{}", a.sha256),
    })
}

async fn artifact_rpc(
    svc: &Service,
    grant: &Grant,
    headers: &HeaderMap,
    method: &str,
    body: &Value,
) -> Result<Value, Refused> {
    let run = str_field(body, "workflow_run_backend_id");
    let job = str_field(body, "workflow_job_run_backend_id");
    if run != grant.run {
        return Err(Refused(403, "the token is for another workflow run".into()));
    }
    let now = now_ms();
    let name = str_field(body, "name");
    let live = |a: &Artifact| a.run == run && a.expires_ms > now;
    match method {
        "CreateArtifact" => {
            svc.sweep_expired_artifacts();
            if job != grant.job {
                return Err(Refused(403, "the token is for another job".into()));
            }
            check_artifact_name(&name)?;
            let exists = svc
                .inner
                .artifacts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|a| live(a) && a.name == name);
            if exists {
                return Err(Refused(
                    409,
                    format!(
                        "an artifact named {name} already exists on this workflow run (names are unique per run; delete it or pick another name)"
                    ),
                ));
            }
            let default_exp = now + i64::from(svc.inner.cfg.artifact_retention_days) * 86_400_000;
            let expires_ms = match field(body, "expires_at").and_then(Value::as_str) {
                Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|_| Refused(400, format!("expires_at {t:?} is not an RFC 3339 time")))?
                    .timestamp_millis()
                    .min(default_exp),
                None => default_exp,
            };
            let mime = field(body, "mime_type")
                .and_then(Value::as_str)
                .unwrap_or("application/zip")
                .to_string();
            let id = svc.new_upload(Target::Artifact {
                run,
                job,
                name,
                mime,
                expires_ms,
            })?;
            Ok(json!({"ok": true, "signed_upload_url": svc.signed_url(headers, "up", &id)}))
        }
        "FinalizeArtifact" => {
            let size = field(body, "size").and_then(int64).unwrap_or(-1);
            let up = svc
                .take_upload(|u| {
                    matches!(&u.target, Target::Artifact { run: r, job: j, name: n, .. }
                    if r == &run && j == &job && n == &name)
                })
                .ok_or_else(|| {
                    Refused(404, format!("no upload in progress for artifact {name}"))
                })?;
            let (got, parts) = completed(&up, size, &format!("artifact {name}"), "it is not kept")?;
            let Target::Artifact {
                mime, expires_ms, ..
            } = up.target.clone()
            else {
                return Err(Refused(500, "not an artifact upload".into()));
            };
            let file = if mime == "application/zip" {
                format!("{name}.zip")
            } else {
                name.clone()
            };
            let dir = if svc.inner.cfg.artifacts_per_run {
                svc.inner.cfg.artifact_dir.join(&run)
            } else {
                svc.inner.cfg.artifact_dir.clone()
            };
            let path: PathBuf = dir.join(file);
            // Joined under a hidden name first: the digest the client sent is
            // checked before the file takes its name.
            let tmp = dir.join(format!(".{:x}.upload", svc.next_id()));
            let (data, t2, parts2) = (up.data.clone(), tmp.clone(), parts.clone());
            let joined = tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(t2.parent().unwrap_or(&t2))?;
                blob::join_parts(&data, &parts2, &t2)
            })
            .await
            .map_err(|e| Refused(500, e.to_string()))?;
            let sha = match joined {
                Ok(sha) => sha,
                Err(e) => {
                    up.discard();
                    let _ = std::fs::remove_file(&tmp);
                    return Err(Refused(500, format!("cannot keep artifact {name}: {e}")));
                }
            };
            if let Some(h) = field(body, "hash").and_then(Value::as_str) {
                let want = h.strip_prefix("sha256:").unwrap_or(h);
                if !want.eq_ignore_ascii_case(&sha) {
                    up.discard();
                    let _ = std::fs::remove_file(&tmp);
                    return Err(Refused(
                        400,
                        format!(
                            "artifact {name}: the uploaded bytes hash to sha256:{sha}, not {h}; it is not kept"
                        ),
                    ));
                }
            }
            if let Err(e) = std::fs::rename(&tmp, &path) {
                up.discard();
                let _ = std::fs::remove_file(&tmp);
                return Err(Refused(
                    500,
                    format!("cannot keep artifact {name} at {}: {e}", path.display()),
                ));
            }
            up.discard();
            let a = Artifact {
                id: svc.next_id(),
                run,
                job,
                name,
                size: got,
                sha256: sha,
                mime,
                created_ms: now,
                expires_ms,
                path,
            };
            let id = a.id;
            if let Err(e) = svc.remember_artifact(&a) {
                let _ = std::fs::remove_file(&a.path);
                return Err(Refused(
                    500,
                    format!("cannot record artifact {}: {e}", a.name),
                ));
            }
            svc.inner
                .artifacts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(a);
            Ok(json!({"ok": true, "artifact_id": id.to_string()}))
        }
        "ListArtifacts" => {
            let name_filter = field(body, "name_filter")
                .and_then(Value::as_str)
                .map(str::to_string);
            let id_filter = field(body, "id_filter").and_then(int64);
            let list: Vec<Value> = svc
                .inner
                .artifacts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|a| live(a))
                .filter(|a| name_filter.as_ref().is_none_or(|n| &a.name == n))
                .filter(|a| id_filter.is_none_or(|i| a.id as i64 == i))
                .map(artifact_json)
                .collect();
            Ok(json!({"artifacts": list}))
        }
        "GetSignedArtifactURL" => {
            let id = svc
                .inner
                .artifacts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|a| live(a) && a.name == name)
                .map(|a| a.id)
                .ok_or_else(|| {
                    Refused(
                        404,
                        format!("no artifact named {name} on this workflow run"),
                    )
                })?;
            Ok(json!({"signed_url": svc.signed_url(headers, "artifact", &id.to_string())}))
        }
        "DeleteArtifact" => {
            let removed = {
                let mut arts = svc
                    .inner
                    .artifacts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let pos = arts
                    .iter()
                    .position(|a| live(a) && a.name == name)
                    .ok_or_else(|| {
                        Refused(
                            404,
                            format!("no artifact named {name} on this workflow run"),
                        )
                    })?;
                arts.remove(pos)
            };
            svc.forget_artifact(&removed);
            Ok(json!({"ok": true, "artifact_id": removed.id.to_string()}))
        }
        other => Err(Refused(
            404,
            format!("ArtifactService has no method {other}"),
        )),
    }
}

#[derive(Deserialize)]
struct Signed {
    #[serde(default)]
    se: i64,
    #[serde(default)]
    sig: String,
    comp: Option<String>,
    blockid: Option<String>,
}

/// Azure's blob API answers writes with 201 and these headers; the SDK reads them.
fn created() -> Response {
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    h.insert(
        "x-ms-request-server-encrypted",
        HeaderValue::from_static("false"),
    );
    h.insert("x-ms-version", HeaderValue::from_static("2025-01-05"));
    h.insert(header::ETAG, HeaderValue::from_static("\"0x1\""));
    r
}

/// "Put Blob", "Put Block" and "Put Block List" on a signed upload URL.
async fn blob_put(
    State(svc): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
    body: Body,
) -> Response {
    if !svc
        .inner
        .signer
        .check_url_sig(&format!("up:{id}"), q.se, &q.sig, now_ms() / 1000)
    {
        return twirp_error(
            403,
            "the upload URL is not valid (bad signature or expired)",
        );
    }
    let (blocks, data, staged_bytes, staged_count) = {
        let ups = svc.inner.uploads.lock().unwrap_or_else(|e| e.into_inner());
        match ups.get(&id) {
            Some(u) if u.done.is_none() => (
                u.blocks.clone(),
                u.data.clone(),
                u.staged.values().map(|p| p.size).sum::<u64>(),
                u.staged.len(),
            ),
            Some(_) => return twirp_error(409, "this upload is already complete"),
            None => return twirp_error(404, "no such upload (finalized, or never created)"),
        }
    };
    // The whole blob, all its blocks together, stays within the size limit.
    let limit = svc.inner.cfg.max_total_bytes.saturating_sub(staged_bytes);
    if q.comp.as_deref() == Some("block") && staged_count >= MAX_BLOCKS {
        return twirp_error(413, format!("an upload has at most {MAX_BLOCKS} blocks"));
    }
    let sha = |h: Option<sha2::Sha256>| {
        use sha2::Digest as _;
        hex::encode(h.unwrap_or_default().finalize())
    };
    let result: Result<Option<(u64, Vec<Part>)>, Refused> = async {
        match (q.comp.as_deref(), q.blockid.as_deref()) {
            (Some("block"), Some(bid)) => {
                let name = blob::block_file_name(bid)?;
                std::fs::create_dir_all(&blocks)
                    .map_err(|e| Refused(500, format!("cannot stage the block: {e}")))?;
                let tmp = blocks.join(format!("{name}.part"));
                let f = std::fs::File::create(&tmp)
                    .map_err(|e| Refused(500, format!("cannot stage the block: {e}")))?;
                let (_, h, n) =
                    blob::body_to_file(body, f, Some(sha2::Digest::new()), limit).await?;
                std::fs::rename(&tmp, blocks.join(&name))
                    .map_err(|e| Refused(500, format!("cannot stage the block: {e}")))?;
                let part = Part {
                    size: n,
                    sha256: sha(h),
                };
                if let Some(u) = svc
                    .inner
                    .uploads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&id)
                {
                    u.staged.insert(name, part);
                }
                Ok(None)
            }
            (Some("blocklist"), _) => {
                let bytes = axum::body::to_bytes(body, 16 << 20)
                    .await
                    .map_err(|e| Refused(400, format!("cannot read the block list: {e}")))?;
                let ids = blob::parse_block_list(&String::from_utf8_lossy(&bytes))?;
                let staged = svc
                    .inner
                    .uploads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&id)
                    .map(|u| u.staged.clone())
                    .unwrap_or_default();
                let r = tokio::task::spawn_blocking(move || {
                    blob::commit_blocks(&blocks, &ids, &data, &staged)
                })
                .await
                .map_err(|e| Refused(500, e.to_string()))??;
                Ok(Some(r))
            }
            (None, _) => {
                let _ = std::fs::remove_dir_all(&data);
                std::fs::create_dir_all(&data)
                    .map_err(|e| Refused(500, format!("cannot store the upload: {e}")))?;
                let f = std::fs::File::create(blob::part_path(&data, 0))
                    .map_err(|e| Refused(500, format!("cannot store the upload: {e}")))?;
                let (_, h, n) =
                    blob::body_to_file(body, f, Some(sha2::Digest::new()), limit).await?;
                Ok(Some((
                    n,
                    vec![Part {
                        size: n,
                        sha256: sha(h),
                    }],
                )))
            }
            (Some(other), _) => Err(Refused(
                400,
                format!("unsupported blob operation comp={other}"),
            )),
        }
    }
    .await;
    match result {
        Ok(done) => {
            if let Some(d) = done
                && let Some(u) = svc
                    .inner
                    .uploads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&id)
            {
                u.done = Some(d);
            }
            created()
        }
        Err(e) => e.into_response(),
    }
}

/// What to do when stored bytes turn out corrupt while served.
type OnCorrupt = Box<dyn FnOnce() + Send>;

/// A signed download of a cache entry or an artifact.
async fn blob_get(
    State(svc): State<Service>,
    Path((kind, id)): Path<(String, String)>,
    Query(q): Query<Signed>,
) -> Response {
    if !svc
        .inner
        .signer
        .check_url_sig(&format!("{kind}:{id}"), q.se, &q.sig, now_ms() / 1000)
    {
        return twirp_error(
            403,
            "the download URL is not valid (bad signature or expired)",
        );
    }
    let Ok(num) = id.parse::<u64>() else {
        return twirp_error(404, "no such blob");
    };
    // Each part's file with its recorded size and digest.
    let (files, size, mime, on_corrupt): (Vec<(PathBuf, Part)>, u64, String, OnCorrupt) =
        match kind.as_str() {
            "cache" => {
                let all = match svc.inner.cache.all_entries() {
                    Ok(a) => a,
                    Err(e) => return twirp_error(500, format!("cannot read the cache: {e}")),
                };
                let Some(e) = all.into_iter().find(|e| e.id == num) else {
                    return twirp_error(404, "the cache entry is gone (evicted)");
                };
                let store = svc.inner.cache.clone();
                let e2 = e.clone();
                let remove: OnCorrupt = Box::new(move || {
                    tracing::warn!(message = "Corrupt cache entry removed.", key = %e2.key);
                    let _ = store.remove(&e2);
                });
                let dir = svc.inner.cache.blob_path(&e);
                let files = e
                    .parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (blob::part_path(&dir, i), p.clone()))
                    .collect();
                (files, e.size, "application/octet-stream".into(), remove)
            }
            "artifact" => {
                let now = now_ms();
                let a = svc
                    .inner
                    .artifacts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .find(|a| a.id == num && a.expires_ms > now)
                    .cloned();
                let Some(a) = a else {
                    return twirp_error(404, "the artifact is gone (deleted or expired)");
                };
                let part = Part {
                    size: a.size,
                    sha256: a.sha256,
                };
                (vec![(a.path, part)], a.size, a.mime, Box::new(|| {}))
            }
            _ => return twirp_error(404, "no such blob"),
        };
    // A missing part or a size that differs from the record is caught before
    // a byte is sent.
    let mut on_disk = 0u64;
    let mut sizes_match = true;
    for (path, part) in &files {
        match std::fs::metadata(path) {
            Ok(m) => {
                on_disk += m.len();
                sizes_match &= m.len() == part.size;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => sizes_match = false,
            Err(e) => return twirp_error(500, format!("the stored bytes cannot be read: {e}")),
        }
    }
    if !sizes_match || on_disk != size {
        on_corrupt();
        return twirp_error(
            500,
            format!(
                "the stored bytes are corrupt ({on_disk} bytes, {size} recorded); the entry was removed"
            ),
        );
    }
    let body = blob::checked_stream(files, on_corrupt);
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    r
}

#[derive(Deserialize)]
struct LegacyQuery {
    #[serde(default)]
    keys: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    key: String,
}

/// Legacy lookup: 200 with the entry, 204 on a miss.
async fn legacy_get(
    State(svc): State<Service>,
    headers: HeaderMap,
    Query(q): Query<LegacyQuery>,
) -> Response {
    let grant = match svc.grant(&headers) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let keys: Vec<String> = q.keys.split(',').map(str::to_string).collect();
    let found = async {
        check_version(&q.version)?;
        if keys.len() > 10 {
            return Err(Refused(400, "at most 10 keys".into()));
        }
        for k in &keys {
            check_key(k)?;
        }
        svc.find_entry(&grant, &q.version, &keys).await
    }
    .await;
    match found {
        Ok(Some(e)) => {
            svc.touch(&e).await;
            axum::Json(json!({
                "cacheKey": e.key,
                "scope": e.scope,
                "cacheVersion": e.version,
                "creationTime": rfc3339(e.created_ms),
                "archiveLocation": svc.signed_url(&headers, "cache", &e.id.to_string()),
            }))
            .into_response()
        }
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Legacy listing (the toolkit asks for it in debug mode after a miss).
async fn legacy_list(
    State(svc): State<Service>,
    headers: HeaderMap,
    Query(q): Query<LegacyQuery>,
) -> Response {
    let grant = match svc.grant(&headers) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let all = match svc.cache_entries(&grant.repository).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let list: Vec<Value> = all
        .iter()
        .filter(|e| grant.read_scopes.contains(&e.scope) && e.key == q.key)
        .map(|e| json!({"cacheKey": e.key, "cacheVersion": e.version, "scope": e.scope, "creationTime": rfc3339(e.created_ms)}))
        .collect();
    axum::Json(json!({"totalCount": list.len(), "artifactCaches": list})).into_response()
}

fn legacy_error(status: u16, msg: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({"message": msg, "typeKey": "ArtifactCacheException"})),
    )
        .into_response()
}

async fn legacy_reserve(
    State(svc): State<Service>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let grant = match svc.grant(&headers) {
        Ok(g) => g,
        Err(e) => return legacy_error(e.0, e.1),
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = str_field(&body, "key");
    let version = str_field(&body, "version");
    let res: Result<Response, Refused> = async {
        check_key(&key)?;
        check_version(&version)?;
        if let Some(size) = field(&body, "cacheSize").and_then(int64)
            && size as u64 > svc.inner.cfg.max_total_bytes
        {
            return Err(Refused(
                400,
                format!("Cache size of {size} B is over the limit of {} B, not saving cache.", svc.inner.cfg.max_total_bytes),
            ));
        }
        let entries = svc.cache_entries(&grant.repository).await?;
        let taken = entries
            .iter()
            .any(|e| e.scope == grant.write_scope && e.key == key && e.version == version)
            || svc.pending(|u| matches!(&u.target, Target::Cache { repository, scope, key: k, version: v, .. }
                if repository == &grant.repository && scope == &grant.write_scope && k == &key && v == &version));
        if taken {
            return Err(Refused(409, format!("Cache already exists. Scope: {}, Key: {key}, Version: {version}", grant.write_scope)));
        }
        let cache_id = svc.next_id();
        svc.new_upload(Target::Cache {
            repository: grant.repository.clone(),
            scope: grant.write_scope.clone(),
            key: key.clone(),
            version: version.clone(),
            legacy_id: Some(cache_id),
        })?;
        Ok(axum::Json(json!({"cacheId": cache_id})).into_response())
    }
    .await;
    res.unwrap_or_else(|e| legacy_error(e.0, e.1))
}

fn legacy_upload_id(svc: &Service, grant: &Grant, id: u64) -> Option<(String, PathBuf)> {
    let ups = svc.inner.uploads.lock().unwrap_or_else(|e| e.into_inner());
    ups.iter()
        .find(|(_, u)| {
            matches!(&u.target, Target::Cache { repository, legacy_id: Some(l), .. }
            if *l == id && repository == &grant.repository)
        })
        .map(|(k, u)| (k.clone(), u.data.clone()))
}

/// A range of the archive: `Content-Range: bytes START-END/*`.
async fn legacy_patch(
    State(svc): State<Service>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let grant = match svc.grant(&headers) {
        Ok(g) => g,
        Err(e) => return legacy_error(e.0, e.1),
    };
    let Some((up_id, data)) = legacy_upload_id(&svc, &grant, id) else {
        return legacy_error(404, format!("no cache reservation {id}"));
    };
    let range = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
    let Some((start, end)) = range.filter(|(a, b)| a <= b) else {
        return legacy_error(400, "Content-Range: bytes START-END/* is required".into());
    };
    let limit = svc.inner.cfg.max_total_bytes;
    if end >= limit {
        return legacy_error(
            413,
            format!("the cache archive passes the limit of {limit} bytes"),
        );
    }
    let res: Result<u64, Refused> = async {
        use std::io::Seek;
        std::fs::create_dir_all(&data)
            .map_err(|e| Refused(500, format!("cannot store the upload: {e}")))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(blob::part_path(&data, 0))
            .map_err(|e| Refused(500, format!("cannot store the upload: {e}")))?;
        f.seek(std::io::SeekFrom::Start(start))
            .map_err(|e| Refused(500, e.to_string()))?;
        let (_, _, n) = blob::body_to_file(body, f, None, end - start + 1).await?;
        if n != end - start + 1 {
            return Err(Refused(
                400,
                format!("the range {start}-{end} carried {n} bytes"),
            ));
        }
        Ok(n)
    }
    .await;
    match res {
        Ok(n) => {
            if let Some(u) = svc
                .inner
                .uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&up_id)
            {
                u.ranged += n;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => legacy_error(e.0, e.1),
    }
}

/// Commit: `{"size": N}`; every byte must have arrived.
async fn legacy_commit(
    State(svc): State<Service>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let grant = match svc.grant(&headers) {
        Ok(g) => g,
        Err(e) => return legacy_error(e.0, e.1),
    };
    let size = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("size").and_then(int64))
        .unwrap_or(-1);
    let Some((up_id, _)) = legacy_upload_id(&svc, &grant, id) else {
        return legacy_error(404, format!("no cache reservation {id}"));
    };
    let Some(up) = svc.take_upload(|u| u.data.ends_with(format!("{up_id}.data"))) else {
        return legacy_error(404, format!("no cache reservation {id}"));
    };
    let data = blob::part_path(&up.data, 0);
    let hashed = tokio::task::spawn_blocking(move || blob::hash_file(&data)).await;
    let (len, sha) = match hashed {
        Ok(Ok(h)) => h,
        _ => (0, String::new()),
    };
    if size < 0 || len != size as u64 || up.ranged != len {
        up.discard();
        return legacy_error(
            400,
            format!(
                "the cache archive is incomplete ({} of {size} bytes arrived); the entry is not saved",
                up.ranged
            ),
        );
    }
    match svc
        .publish(
            up,
            len,
            vec![Part {
                size: len,
                sha256: sha,
            }],
        )
        .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => legacy_error(e.0, e.1),
    }
}

/// The one completeness check of a finalize call, for cache entries and artifacts alike: an
/// upload that never arrived, or whose size differs from the size the finalize call names, is
/// discarded and refused, so a truncated upload never becomes an entry.
fn completed(
    up: &Upload,
    size: i64,
    what: &str,
    consequence: &str,
) -> Result<(u64, Vec<crate::storage::Part>), Refused> {
    let Some((got, parts)) = up.done.clone() else {
        up.discard();
        return Err(Refused(
            400,
            format!("{what}: nothing was uploaded; {consequence}"),
        ));
    };
    if size < 0 || got != size as u64 {
        up.discard();
        return Err(Refused(
            400,
            format!(
                "{what}: the upload is incomplete ({got} of {size} bytes arrived); {consequence}"
            ),
        ));
    }
    Ok((got, parts))
}
