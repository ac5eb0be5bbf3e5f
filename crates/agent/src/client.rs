//! HTTP client for the agent protocol, with retries where a call is idempotent.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::StatusCode;

use crate::protocol::*;

/// The server and this agent cannot work together (another protocol
/// version): retrying cannot help, the agent stops with this message.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The server no longer accepts this agent (HTTP 401 to its credential): it
/// was removed, or its registration token revoked. Retrying cannot help;
/// the agent stops and says how to register again.
#[derive(Debug)]
pub struct Removed(pub String);

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server no longer accepts this agent ({}): it was removed, or the token that \
             registered it was revoked. To register again, start `hangar agent` with a new \
             agent token (an administrator creates one with POST /api/v1/tokens)",
            self.0
        )
    }
}

impl std::error::Error for Removed {}

/// What a registration answered that retrying cannot change.
fn registration_refused(status: StatusCode, text: &str) -> anyhow::Error {
    let body: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let said = body.get("error").and_then(|e| e.as_str()).unwrap_or(text);
    Refused(format!(
        "the server refused to register this agent ({status}): {said}"
    ))
    .into()
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    /// The key of the lease this client speaks about (`X-Hangar-Lease`).
    lease: Option<String>,
}

impl Client {
    pub fn new(server: &str, token: &str) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(16)
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            http,
            base: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            lease: None,
        })
    }

    /// Registers this agent with the client's token; the server's answer
    /// (an id and a credential). A refusal (bad or used token, another
    /// protocol version) is [`Refused`]; a server error or an unreachable
    /// server is an error to retry.
    pub async fn register(&self, req: &RegisterRequest) -> anyhow::Result<RegisterResponse> {
        let resp = self
            .post("/api/v1/agents/register")
            .timeout(Duration::from_secs(30))
            .json(req)
            .send()
            .await
            .with_context(|| format!("registering with {}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return resp
                .json()
                .await
                .context("reading the server's registration");
        }
        let text = resp.text().await.unwrap_or_default();
        if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
            return Err(registration_refused(status, &text));
        }
        bail!("registration answered {status}: {text}")
    }

    /// This client, authenticating with a registered agent's credential
    /// instead of the token it registered with.
    pub fn with_credential(&self, credential: &str) -> Client {
        Client {
            token: credential.to_string(),
            ..self.clone()
        }
    }

    /// This client, proving the lease `key` on every call.
    pub fn with_lease(&self, key: &str) -> Client {
        Client {
            lease: Some(key.to_string()),
            ..self.clone()
        }
    }

    fn authed(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let r = r.bearer_auth(&self.token);
        match &self.lease {
            Some(k) => r.header(crate::protocol::LEASE_HEADER, k),
            None => r,
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.authed(self.http.post(format!("{}{}", self.base, path)))
    }

    pub async fn poll(&self, req: &PollRequest) -> anyhow::Result<Option<Assignment>> {
        let resp = self
            .post("/api/v1/agent/poll")
            .timeout(Duration::from_millis(req.wait_ms + 10_000))
            .json(req)
            .send()
            .await
            .with_context(|| format!("polling {}", self.base))?;
        match resp.status() {
            StatusCode::NO_CONTENT => Ok(None),
            StatusCode::OK => {
                // The version first: another version's assignment may not
                // even read as this one's.
                let v: serde_json::Value = resp.json().await?;
                let theirs = v.get("protocol_version").and_then(|p| p.as_u64());
                if theirs != Some(u64::from(PROTOCOL_VERSION)) {
                    let server = v.get("hangar_version").and_then(|h| h.as_str());
                    let why = version_mismatch(
                        PROTOCOL_VERSION,
                        HANGAR_VERSION,
                        theirs.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
                        server.unwrap_or(""),
                    );
                    // The job is this agent's until told: say so now, so
                    // the server queues it again (or fails it saying why)
                    // rather than wait for the lease to expire.
                    if let Err(e) = self.refuse_assignment(&v, &why).await {
                        tracing::warn!("telling the server the job is refused failed: {e:#}");
                    }
                    return Err(Refused(why).into());
                }
                Ok(Some(
                    serde_json::from_value(v).context("reading the server's assignment")?,
                ))
            }
            StatusCode::UNAUTHORIZED => {
                let text = resp.text().await.unwrap_or_default();
                let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let said = body.get("error").and_then(|e| e.as_str()).unwrap_or(&text);
                Err(Removed(format!("401: {said}")).into())
            }
            s => {
                let text = resp.text().await.unwrap_or_default();
                let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if body.get("code").and_then(|c| c.as_str()) == Some(PROTOCOL_MISMATCH) {
                    let why = body.get("error").and_then(|e| e.as_str()).unwrap_or(&text);
                    return Err(Refused(why.to_string()).into());
                }
                bail!("poll answered {s}: {text}")
            }
        }
    }

    /// Gives back the job of an assignment (read as loosely as another
    /// version's may be written: its id, fence and lease key) this agent
    /// will not run.
    async fn refuse_assignment(&self, v: &serde_json::Value, why: &str) -> anyhow::Result<()> {
        let job_id = v
            .get("job_id")
            .and_then(|j| j.as_i64())
            .context("the assignment names no job")?;
        let req = RefuseRequest {
            fence: v.get("fence").and_then(|f| f.as_i64()).unwrap_or(0),
            protocol_version: PROTOCOL_VERSION,
            hangar_version: HANGAR_VERSION.to_string(),
            reason: why.to_string(),
        };
        let key = v.get("lease_key").and_then(|k| k.as_str()).unwrap_or("");
        let resp = self
            .with_lease(key)
            .post(&format!("/api/v1/agent/jobs/{job_id}/refuse"))
            .json(&req)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("refuse answered {}", resp.status());
        }
        Ok(())
    }

    /// `None` when the lease was lost (409), or the agent removed (401).
    pub async fn heartbeat(
        &self,
        job_id: i64,
        fence: i64,
    ) -> anyhow::Result<Option<HeartbeatResponse>> {
        let resp = self
            .post(&format!("/api/v1/agent/jobs/{job_id}/heartbeat"))
            .timeout(Duration::from_secs(10))
            .json(&FenceOnly { fence })
            .send()
            .await?;
        match resp.status() {
            StatusCode::CONFLICT | StatusCode::UNAUTHORIZED => Ok(None),
            s if s.is_success() => Ok(Some(resp.json().await?)),
            s => bail!("heartbeat answered {s}"),
        }
    }

    /// Retries until the server acknowledges the chunk; safe because chunks are
    /// idempotent on their index.
    pub async fn upload_logs(&self, job_id: i64, up: &LogUpload) -> anyhow::Result<LogAck> {
        self.retrying(|| async {
            let resp = self
                .post(&format!("/api/v1/agent/jobs/{job_id}/logs"))
                .timeout(Duration::from_secs(30))
                .json(up)
                .send()
                .await?;
            // 401: the agent was removed, and its job handed back.
            if matches!(
                resp.status(),
                StatusCode::CONFLICT | StatusCode::UNAUTHORIZED
            ) {
                bail!("lease lost");
            }
            Ok(resp.error_for_status()?.json::<LogAck>().await?)
        })
        .await
    }

    pub async fn step(&self, job_id: i64, step: &StepReport) -> anyhow::Result<()> {
        self.retrying(|| async {
            let resp = self
                .post(&format!("/api/v1/agent/jobs/{job_id}/steps"))
                .timeout(Duration::from_secs(10))
                .json(step)
                .send()
                .await?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                bail!("lease lost: this agent was removed and the job handed back");
            }
            resp.error_for_status()?;
            Ok(())
        })
        .await
    }

    pub async fn complete(&self, job_id: i64, req: &CompleteRequest) -> anyhow::Result<()> {
        self.retrying(|| async {
            let resp = self
                .post(&format!("/api/v1/agent/jobs/{job_id}/complete"))
                .timeout(Duration::from_secs(10))
                .json(req)
                .send()
                .await?;
            if resp.status() == StatusCode::CONFLICT {
                bail!("lease lost: the job was reassigned or finished elsewhere");
            }
            if resp.status() == StatusCode::UNAUTHORIZED {
                bail!("lease lost: this agent was removed and the job handed back");
            }
            resp.error_for_status()?;
            Ok(())
        })
        .await
    }

    /// Names of the artifacts the job's run has so far.
    pub async fn artifact_names(&self, job_id: i64) -> anyhow::Result<Vec<String>> {
        let resp = self
            .authed(self.http.get(format!(
                "{}/api/v1/agent/jobs/{job_id}/artifacts",
                self.base
            )))
            .timeout(Duration::from_secs(30))
            .send()
            .await?
            .error_for_status()?;
        Ok(resp.json().await?)
    }

    /// An artifact as a tar archive of its directory.
    pub async fn download_artifact(&self, job_id: i64, name: &str) -> anyhow::Result<Vec<u8>> {
        let resp = self
            .authed(self.http.get(format!(
                "{}/api/v1/agent/jobs/{job_id}/artifacts/{name}",
                self.base
            )))
            .timeout(Duration::from_secs(600))
            .send()
            .await?
            .error_for_status()?;
        Ok(resp.bytes().await?.to_vec())
    }

    pub async fn upload_artifact(
        &self,
        job_id: i64,
        fence: i64,
        name: &str,
        tar: Vec<u8>,
    ) -> anyhow::Result<()> {
        self.post(&format!(
            "/api/v1/agent/jobs/{job_id}/artifacts/{name}?fence={fence}"
        ))
        .timeout(Duration::from_secs(600))
        .body(tar)
        .send()
        .await?
        .error_for_status()?;
        Ok(())
    }

    async fn retrying<T, F, Fut>(&self, f: F) -> anyhow::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        let mut delay = Duration::from_millis(50);
        let mut last = None;
        for _ in 0..8 {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.to_string().contains("lease lost") => return Err(e),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        Err(last.expect("at least one attempt"))
    }
}
