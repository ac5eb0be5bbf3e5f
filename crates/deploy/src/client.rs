//! The one way to reach an environment's controller, for the CLI, the server
//! and the `hangar/deploy` step: start it when none runs, send it a request,
//! read typed replies. A controller started with no stable release deploys
//! its first release as it starts; [`EnvClient::deploy`] then answers with
//! that deployment, read from history, as if it had been asked for.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::control::{self, FirstRelease, Request};
use crate::state::{DeploymentRecord, EnvFiles};

/// One environment of one project, as seen from outside its controller.
#[derive(Debug, Clone)]
pub struct EnvClient {
    /// The `hangar` binary that runs controllers (`hangar up ENV`).
    exe: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    env: String,
    files: EnvFiles,
}

/// Whether [`EnvClient::ensure_running`] found a controller or started one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    AlreadyRunning,
    /// Started now (its pid); `first_deployment` when it had no stable
    /// release, so that its start deployed one.
    Now {
        pid: u32,
        first_deployment: bool,
    },
}

impl EnvClient {
    pub fn new(exe: &Path, dir: &Path, data: &Path, env: &str) -> EnvClient {
        EnvClient {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            data: data.to_path_buf(),
            env: env.to_string(),
            files: EnvFiles::new(data, env),
        }
    }

    pub fn files(&self) -> &EnvFiles {
        &self.files
    }

    /// Whether a controller answers on the environment's socket.
    pub async fn running(&self) -> bool {
        control::running(&self.files.socket()).await
    }

    /// Starts the controller unless one answers. `first` says where the first
    /// release of services that have none comes from.
    pub async fn ensure_running(
        &self,
        no_build: bool,
        first: &FirstRelease,
    ) -> anyhow::Result<Started> {
        if self.running().await {
            return Ok(Started::AlreadyRunning);
        }
        let first_deployment = self.files.load().stable.is_empty();
        let pid =
            control::start_controller(&self.exe, &self.dir, &self.data, &self.env, no_build, first)
                .await?;
        Ok(Started::Now {
            pid,
            first_deployment,
        })
    }

    /// Sends one request to a running controller; `on_event` gets its progress.
    pub async fn call(
        &self,
        req: &Request,
        on_event: impl FnMut(&str),
    ) -> anyhow::Result<serde_json::Value> {
        control::call(&self.files.socket(), req, on_event).await
    }

    /// Deploys (`req` is a [`Request::Deploy`]), starting the controller when
    /// none runs. Returns the deployments made: none when nothing changed.
    pub async fn deploy(
        &self,
        req: &Request,
        mut on_event: impl FnMut(&str),
    ) -> anyhow::Result<Vec<DeploymentRecord>> {
        let Request::Deploy {
            artifact,
            commit,
            no_build,
            from_commit,
            with_dependencies,
            ..
        } = req
        else {
            bail!("not a deployment request");
        };
        let before = self.files.history().len();
        let first = FirstRelease {
            git_ref: commit.clone().filter(|_| *from_commit),
            artifact: artifact.as_ref().map(PathBuf::from),
            with_dependencies: *with_dependencies,
        };
        if let Started::Now {
            pid,
            first_deployment,
        } = self.ensure_running(*no_build, &first).await?
        {
            on_event(&format!(
                "started the controller of `{}` (pid {pid}, log {})",
                self.env,
                self.files.dir.join("controller.log").display()
            ));
            if first_deployment {
                // Its start was this deployment.
                return Ok(self.files.history().into_iter().skip(before).collect());
            }
        }
        let v = self.call(req, on_event).await?;
        serde_json::from_value(v).context("unexpected answer from the controller")
    }

    /// Rolls back (a [`Request::Rollback`]), starting the controller when none runs.
    pub async fn rollback(
        &self,
        req: &Request,
        on_event: impl FnMut(&str),
    ) -> anyhow::Result<Vec<DeploymentRecord>> {
        self.ensure_running(true, &FirstRelease::default()).await?;
        let v = self.call(req, on_event).await?;
        serde_json::from_value(v).context("unexpected answer from the controller")
    }

    /// `promote` or `abort` of a running rollout: the controller's answer.
    pub async fn signal(&self, req: &Request) -> anyhow::Result<String> {
        if !self.running().await {
            bail!(
                "environment `{}` is not running: nothing to {}",
                self.env,
                if matches!(req, Request::Promote) {
                    "promote"
                } else {
                    "abort"
                }
            );
        }
        let v = self.call(req, |_| {}).await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }
}

/// A watched project's id on a server: 12 hex digits of the SHA-256 of its
/// directory's absolute path (resolved when it still exists). The same at
/// every start of the server and on any store, and distinct for two
/// checkouts that share a folder name, which the folder name is not.
pub fn project_id(dir: &Path) -> String {
    use sha2::Digest;
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    hex::encode(digest)[..12].to_string()
}

/// A hangar server that watches the project (`hangar serve --repo DIR`):
/// controller requests go through its delivery API, which asks a protected
/// environment's reviewers and waits before its controller acts. Used by
/// `hangar deploy|rollback|promote|status|up --server` and by the
/// `hangar/deploy` step given a `server`.
#[derive(Debug, Clone)]
pub struct ServerClient {
    base: String,
    token: Option<String>,
    /// The project's name (or id) on the server.
    project: String,
    /// The project's directory here, when the name was taken from it: if
    /// the server watches several projects of that name, the one at this
    /// path (the same id) is meant.
    dir: Option<PathBuf>,
    /// A server's job deploying with its deployment key instead of a token.
    job: Option<JobKey>,
}

/// The header of a server's job's deployment key (the agent's
/// `JobDeploy::Server`): the job deploys without a token.
pub const JOB_DEPLOY_HEADER: &str = "x-hangar-deploy";

/// A leased job's id and deployment key (`X-Hangar-Deploy`).
#[derive(Clone)]
struct JobKey {
    id: i64,
    key: String,
}

impl std::fmt::Debug for JobKey {
    // The key is a credential: never in a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ServerClient {
    pub fn new(server: &str, token: Option<String>, project: &str) -> ServerClient {
        ServerClient {
            base: server.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            project: project.to_string(),
            dir: None,
            job: None,
        }
    }

    /// The `hangar/deploy` step of a job that `server` leased: the job's
    /// deployment key instead of a token, and the server's job routes, where
    /// the job's own environment, repository and commit are the only ones it
    /// reaches.
    pub fn for_job(server: &str, job_id: i64, key: &str) -> ServerClient {
        ServerClient {
            base: server.trim_end_matches('/').to_string(),
            token: None,
            project: String::new(),
            dir: None,
            job: Some(JobKey {
                id: job_id,
                key: key.to_string(),
            }),
        }
    }

    /// The project is the one at `dir` (on a server of this machine that
    /// watches several projects of the same folder name, it is told apart
    /// by its id).
    pub fn at_dir(mut self, dir: &Path) -> ServerClient {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Sends `req` for environment `env`; an operation the server runs in
    /// the background (a deployment, or anything waiting for its reviewers)
    /// is followed until it ends, each of its events handed to `on_event`
    /// (the wait for approval and who decided included). Its result, or the
    /// server's error.
    pub async fn call(
        &self,
        env: &str,
        req: &Request,
        mut on_event: impl FnMut(&str),
    ) -> anyhow::Result<serde_json::Value> {
        let base = &self.base;
        let client = reqwest::Client::new();
        let auth = |rb: reqwest::RequestBuilder| match (&self.job, &self.token) {
            (Some(j), _) => rb.header(JOB_DEPLOY_HEADER, &j.key),
            (None, Some(t)) => rb.bearer_auth(t),
            (None, None) => rb,
        };
        let operations = match &self.job {
            Some(j) => format!("{base}/api/v1/jobs/{}/deploy/operations", j.id),
            None => format!("{base}/api/v1/delivery/operations"),
        };
        let post = |project: String| {
            let url = match &self.job {
                Some(j) => format!("{base}/api/v1/jobs/{}/deploy/{env}", j.id),
                None => format!("{base}/api/v1/delivery/{project}/{env}"),
            };
            auth(client.post(url).json(req)).send()
        };
        let resp = post(self.project.clone())
            .await
            .with_context(|| format!("cannot reach the hangar server at {base}"))?;
        let mut status = resp.status();
        let mut v: serde_json::Value = resp.json().await.unwrap_or_default();
        // Several watched projects share the folder name: the one at this
        // directory's path is meant, when the server watches it.
        if status == reqwest::StatusCode::CONFLICT
            && v["code"] == "ambiguous_project"
            && let Some(dir) = &self.dir
        {
            let id = project_id(dir);
            let ours = v["candidates"]
                .as_array()
                .is_some_and(|c| c.iter().any(|p| p["id"] == id.as_str()));
            if ours {
                let resp = post(id)
                    .await
                    .with_context(|| format!("cannot reach the hangar server at {base}"))?;
                status = resp.status();
                v = resp.json().await.unwrap_or_default();
            }
        }
        if !status.is_success() {
            bail!("{base}: {}", v["error"].as_str().unwrap_or(status.as_str()));
        }
        let Some(id) = v["id"]
            .as_u64()
            .filter(|_| status == reqwest::StatusCode::ACCEPTED)
        else {
            return Ok(v);
        };
        let mut shown = 0;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let op: serde_json::Value = auth(client.get(format!("{operations}/{id}")))
                .send()
                .await
                .with_context(|| format!("cannot reach the hangar server at {base}"))?
                .json()
                .await?;
            let events = op["events"].as_array().cloned().unwrap_or_default();
            for e in events.iter().skip(shown) {
                on_event(e.as_str().unwrap_or_default());
            }
            shown = events.len();
            if op["done"].as_bool() == Some(true) {
                if let Some(e) = op["error"].as_str() {
                    bail!("{e}");
                }
                return Ok(op["result"].clone());
            }
        }
    }

    /// A deployment through the server, as [`EnvClient::deploy`] answers it.
    pub async fn deploy(
        &self,
        env: &str,
        req: &Request,
        on_event: impl FnMut(&str),
    ) -> anyhow::Result<Vec<DeploymentRecord>> {
        let v = self.call(env, req, on_event).await?;
        serde_json::from_value(v).context("the server's answer to a deployment")
    }
}
