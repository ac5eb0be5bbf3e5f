//! Plain records the store hands out. They carry no behaviour: the business rules
//! (when a job becomes runnable, how a run concludes) live in the server.

use serde::{Deserialize, Serialize};

pub use hangar_status::{ApprovalState, Conclusion, Status, UnknownName};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Repo {
    pub id: i64,
    pub name: String,
    pub clone_url: String,
    /// `github`, `gitea`, `gitlab` or `local`.
    pub forge: String,
    pub has_webhook_secret: bool,
    pub created_at: Millis,
    /// Its status badges are served without a token.
    #[serde(default)]
    pub public: bool,
}

/// What `PATCH /api/v1/repos/{id}` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RepoUpdate {
    pub clone_url: Option<String>,
    pub forge: Option<String>,
    /// `Some(None)` removes the secret (no webhook is accepted then).
    pub webhook_secret: Option<Option<String>>,
    pub public: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct NewRepo {
    pub name: String,
    pub clone_url: String,
    pub forge: String,
    pub webhook_secret: Option<String>,
}

/// Where and how the server reports commit statuses for a repository. Not
/// `Serialize`: the token never leaves the server (the API shows `has_token`).
#[derive(Clone, Default, PartialEq)]
pub struct ForgeCredential {
    /// `github`, `gitea` (also Forgejo) or `gitlab`.
    pub kind: String,
    /// The forge's API root, e.g. `https://api.github.com`.
    pub api_url: String,
    /// `owner/name` on the forge (GitLab: the project's full path).
    pub project: String,
    pub token: String,
}

impl std::fmt::Debug for ForgeCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeCredential")
            .field("kind", &self.kind)
            .field("api_url", &self.api_url)
            .field("project", &self.project)
            .field("token", &"***")
            .finish()
    }
}

/// Which events go to which channel. Not `Serialize`: the target URL of a Slack
/// or Teams webhook is itself a credential, and `secret` signs generic webhooks.
#[derive(Clone, Default, PartialEq)]
pub struct NotificationRule {
    pub id: i64,
    /// `None`: every repository (and server-wide events such as a lost agent).
    pub repo_id: Option<i64>,
    pub events: Vec<String>,
    /// `slack`, `teams` or `webhook`.
    pub channel: String,
    pub target: String,
    pub secret: Option<String>,
    pub created_at: Millis,
}

impl std::fmt::Debug for NotificationRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationRule")
            .field("id", &self.id)
            .field("repo_id", &self.repo_id)
            .field("events", &self.events)
            .field("channel", &self.channel)
            .field("target", &"***")
            .finish()
    }
}

/// One message the server sent out (a commit status, a notification), after
/// its last attempt.
#[derive(Debug, Clone, Default)]
pub struct NewOutbound {
    /// `status` or `notification`.
    pub kind: String,
    pub repo_id: Option<i64>,
    pub run_id: Option<i64>,
    /// Where it went, without credentials (a URL or an address).
    pub target: String,
    /// What it was about (a status context, a notification rule).
    pub subject: String,
    /// The state reported (`pending`, `success`, …) or the event notified.
    pub state: String,
    pub attempts: i64,
    /// `delivered`, `refused` (a 4xx: not retried) or `failed` (retries exhausted).
    pub outcome: String,
    pub http_status: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outbound {
    pub id: i64,
    pub kind: String,
    pub repo_id: Option<i64>,
    pub run_id: Option<i64>,
    pub target: String,
    pub subject: String,
    pub state: String,
    pub attempts: i64,
    pub outcome: String,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub at: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: i64,
    pub delivery_id: String,
    pub repo_id: Option<i64>,
    pub event: String,
    pub outcome: String,
    pub run_ids: Vec<i64>,
    pub received_at: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub id: i64,
    pub repo_id: i64,
    pub workflow_path: String,
    pub workflow_name: String,
    pub event: String,
    pub git_ref: String,
    pub sha: String,
    pub status: Status,
    pub conclusion: Option<Conclusion>,
    pub waiting_reason: Option<String>,
    pub concurrency_group: Option<String>,
    pub cancel_in_progress: bool,
    pub attempt: i64,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub actor: String,
    /// `github.run_number`: 1, 2, ... per workflow of the repository.
    pub run_number: i64,
}

/// What the scheduler needs to create a run and its jobs in one transaction.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    pub repo_id: i64,
    pub workflow_path: String,
    pub workflow_name: String,
    pub event: String,
    pub git_ref: String,
    pub sha: String,
    pub payload: serde_json::Value,
    pub concurrency_group: Option<String>,
    pub cancel_in_progress: bool,
    pub actor: String,
    /// The run-wide context every job's agent needs (workflow text, clone URL, inputs).
    pub context: serde_json::Value,
    pub jobs: Vec<NewJob>,
}

#[derive(Debug, Clone, Default)]
pub struct NewJob {
    pub key: String,
    pub name: String,
    pub needs: Vec<String>,
    pub labels: Vec<String>,
    pub environment: Option<String>,
    pub max_attempts: i64,
    /// Backend-neutral description of the job for the agent (no secrets).
    pub spec: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub id: i64,
    pub run_id: i64,
    pub key: String,
    pub name: String,
    pub needs: Vec<String>,
    pub labels: Vec<String>,
    pub status: Status,
    pub conclusion: Option<Conclusion>,
    /// Why a job that is not running is not running, in words for the UI.
    pub waiting_reason: Option<String>,
    pub environment: Option<String>,
    pub outputs: serde_json::Value,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Millis>,
    pub fence: i64,
    pub attempt: i64,
    pub max_attempts: i64,
    pub cancel_requested: bool,
    pub approved: bool,
    pub not_before: Option<Millis>,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// The job's `continue-on-error`, evaluated when it was queued: a
    /// failure is shown as such, but counts as a success for the jobs that
    /// need it and for the run's conclusion (as on GitHub and `hangar run`).
    #[serde(default)]
    pub continue_on_error: bool,
    #[serde(skip_serializing)]
    pub spec: serde_json::Value,
}

/// A change to a job's scheduling state; `None` fields are left as they are.
#[derive(Debug, Clone, Default)]
pub struct JobUpdate {
    pub status: Option<Status>,
    pub conclusion: Option<Option<Conclusion>>,
    pub waiting_reason: Option<Option<String>>,
    pub approved: Option<bool>,
    pub not_before: Option<Option<Millis>>,
    pub finished_at: Option<Millis>,
    /// The job's environment once its `${{ }}` name is evaluated (`None`
    /// inside: an empty name, which is no environment, as on GitHub).
    pub environment: Option<Option<String>>,
    /// Outputs set by the server itself (a job that calls a reusable
    /// workflow takes the called workflow's outputs, not an agent's).
    pub outputs: Option<serde_json::Value>,
    /// The job's `runs-on` labels once their `${{ }}` are evaluated.
    pub labels: Option<Vec<String>>,
    /// The job's `continue-on-error` once evaluated.
    pub continue_on_error: Option<bool>,
}

/// A job handed to one agent: the fencing token must accompany every later call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub job: Job,
    pub fence: i64,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseCheck {
    /// The lease is held with this fence and was extended.
    Held { cancel_requested: bool },
    /// Another attempt owns the job now, or it finished: the caller must stop.
    Lost,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub job_id: i64,
    /// The attempt of the job (its lease count) this step ran in.
    pub attempt: i64,
    pub idx: i64,
    pub name: String,
    pub status: Status,
    pub conclusion: Option<Conclusion>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct LogChunk {
    pub idx: i64,
    pub first_line: i64,
    pub line_count: i64,
    /// The step whose lines these are (`Step::idx`); `None` for the job's own
    /// lines (set-up) and for every chunk of an agent that sends no step.
    pub step: Option<i64>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub labels: Vec<String>,
    pub capacity: i64,
    pub last_seen: Millis,
    pub created_at: Millis,
    /// Drained: it finishes the jobs it holds and is given no new one.
    #[serde(default)]
    pub drained: bool,
    /// The token that registered it (`POST /api/v1/agents/register`); none for
    /// a server's embedded agent and for rows older than registration.
    #[serde(default)]
    pub token_id: Option<i64>,
}

/// A registered agent as its credential finds it.
#[derive(Debug, Clone)]
pub struct AgentCredential {
    pub agent: Agent,
    /// The token that registered it, live (not revoked); `None` for a
    /// server's embedded agent.
    pub token: Option<TokenInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    /// Runs runs: dispatch, cancel, re-run, approve; not settings, secrets or tokens.
    Write,
    Read,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Write => "write",
            Role::Read => "read",
            Role::Agent => "agent",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "write" => Some(Role::Write),
            "read" => Some(Role::Read),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }
}

/// An `api_tokens` row as both backends read it (`id, name, role,
/// created_at, expires_at, revoked_at, scope, reusable, used_at`), before its
/// role and scope are parsed.
pub(crate) struct TokenRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    pub scope: String,
    pub reusable: bool,
    pub used_at: Option<Millis>,
}

impl TokenRow {
    /// The token the row holds: `None` for a role this build does not know
    /// (such a token authenticates nothing), an error for a scope that cannot
    /// be read, which must not widen into "anything".
    pub(crate) fn into_info(self) -> anyhow::Result<Option<TokenInfo>> {
        let id = self.id;
        let scope: TokenScope = serde_json::from_str(&self.scope)
            .map_err(|e| anyhow::anyhow!("token {id}: unreadable scope column: {e}"))?;
        Ok(Role::parse(&self.role).map(|role| TokenInfo {
            id,
            name: self.name,
            role,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            scope,
            reusable: self.reusable,
            used_at: self.used_at,
        }))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: Millis,
    /// After this instant the token authenticates nothing.
    pub expires_at: Option<Millis>,
    /// Set when the token was revoked (`DELETE /api/v1/tokens/{id}`).
    pub revoked_at: Option<Millis>,
    /// What an agent token may take (empty lists: anything).
    #[serde(default)]
    pub scope: TokenScope,
    /// An agent token that registers any number of agents (the default);
    /// `false`: it registers one, and is revoked when that agent is removed.
    #[serde(default = "yes")]
    pub reusable: bool,
    /// When a single-use token registered its agent.
    #[serde(default)]
    pub used_at: Option<Millis>,
}

fn yes() -> bool {
    true
}

/// The jobs an agent token may lease: of these repositories (by name) and
/// with `runs-on` labels all among these. Empty lists do not restrict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenScope {
    #[serde(default)]
    pub repos: Vec<String>,
    #[serde(default)]
    pub labels: Vec<String>,
}

impl TokenScope {
    pub fn is_empty(&self) -> bool {
        self.repos.is_empty() && self.labels.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approval {
    pub id: i64,
    pub job_id: i64,
    pub run_id: i64,
    pub environment: String,
    pub state: ApprovalState,
    pub reviewer: Option<String>,
    pub comment: Option<String>,
    pub created_at: Millis,
    pub decided_at: Option<Millis>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Protection {
    pub reviewers: Vec<String>,
    pub wait_seconds: i64,
    pub branches: Vec<String>,
    /// GitHub's "prevent self-review": whoever triggered the run (the token
    /// that dispatched it, the pusher) may not approve its deployments.
    /// Rows stored before the field existed read as `false`.
    #[serde(default)]
    pub prevent_self_review: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    pub id: i64,
    pub run_id: i64,
    pub name: String,
    pub digest: String,
    pub size: i64,
    pub created_at: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    pub repo_id: i64,
    pub key: String,
    pub digest: String,
    pub size: i64,
    pub created_at: Millis,
}

/// An entry of GitHub's cache service (`hangar-results`): immutable per
/// (repository, scope, version, key); `parts` lists its bytes' parts and
/// their digests as the service wrote them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultsCacheRow {
    pub id: i64,
    pub repository: String,
    pub scope: String,
    pub key: String,
    pub version: String,
    pub size: i64,
    pub parts: serde_json::Value,
    pub created_at: Millis,
    pub last_used_at: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub id: i64,
    pub run_id: i64,
    pub job_id: i64,
    pub environment: String,
    pub sha: String,
    /// The conclusion of the job that deployed.
    pub status: Conclusion,
    pub created_at: Millis,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub repo_id: Option<i64>,
    pub status: Option<Status>,
    pub event: Option<String>,
    /// A branch's short name (`main`, also matching a pull request's head
    /// branch) or a full ref (`refs/heads/main`, `refs/tags/v1`).
    pub branch: Option<String>,
    /// The workflow's name, its path, or its file name under `.github/workflows/`.
    pub workflow: Option<String>,
    /// Only completed runs that ended so.
    pub conclusion: Option<Conclusion>,
    /// A commit id or a prefix of one.
    pub commit: Option<String>,
    pub actor: Option<String>,
    /// The pull request's number.
    pub pull_request: Option<i64>,
    /// Only runs older than this id (the cursor of the previous page).
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub total: i64,
    pub completed: i64,
    pub running: i64,
    pub failed: i64,
    pub cancelled: i64,
}

/// What retention may delete: a completed run's logs, an artifact, a cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionKind {
    Logs,
    Artifact,
    Cache,
}

/// One thing retention may delete, with its size on disk and its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionItem {
    pub kind: RetentionKind,
    /// The run (logs), the artifact or the cache entry.
    pub id: i64,
    /// The repository, when the item knows it by id (logs, artifacts).
    pub repo_id: Option<i64>,
    /// A cache entry's repository, by name (`owner/name`).
    pub repository: Option<String>,
    /// When it was last of use: a run's end, an artifact's upload, a cache
    /// entry's last hit.
    pub at: Millis,
    pub bytes: i64,
}

/// Where a delivery operation (a deployment the server runs for a client)
/// stands, as far as a restarted server must know: one still waiting for its
/// reviewers or wait timer is resumed; one whose controller request was under
/// way when the server died is ended (the controller recovers the deployment
/// itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationPhase {
    Waiting,
    Running,
    Done,
}

impl OperationPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationPhase::Waiting => "waiting",
            OperationPhase::Running => "running",
            OperationPhase::Done => "done",
        }
    }
}

impl std::str::FromStr for OperationPhase {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "waiting" => OperationPhase::Waiting,
            "running" => OperationPhase::Running,
            "done" => OperationPhase::Done,
            other => anyhow::bail!("unknown operation phase `{other}`"),
        })
    }
}

/// A delivery operation as kept: the controller request to perform and the
/// operation as the API shows it (both JSON the server owns).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryOperation {
    pub id: i64,
    pub project: String,
    pub environment: String,
    pub request: serde_json::Value,
    pub state: serde_json::Value,
    pub phase: OperationPhase,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Moved on by every write (see `Store::update_operation`).
    pub version: i64,
}

/// One deployment (or rollback) of a watched project's environment, as its
/// controller recorded it in the environment's history: the columns it is
/// found by, and the record itself (JSON the deploy crate owns). One row per
/// (project, environment, record id, service): two services deployed at once
/// may share a record id.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvDeployment {
    /// The project's stable id (a hash of its directory's path, see the
    /// server's delivery API), not its folder name.
    pub project: String,
    /// Its folder name when the record was read (what metrics label it with).
    pub project_name: String,
    pub environment: String,
    pub service: String,
    pub record_id: i64,
    /// When the deployment started (unix seconds), for DORA's window.
    pub started: i64,
    pub record: serde_json::Value,
}

/// Which [`EnvDeployment`]s to list.
#[derive(Debug, Clone, Default)]
pub struct EnvDeploymentFilter<'a> {
    pub project: Option<&'a str>,
    pub environment: Option<&'a str>,
    /// Only deployments started at or after (unix seconds).
    pub started_since: Option<i64>,
    /// Only the newest this many (still listed oldest first).
    pub last: Option<i64>,
}

/// A run whose `on: workflow_run` followers are still to be looked for
/// (`action`: `requested` or `completed`, GitHub's event action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedWorkflowRun {
    pub id: i64,
    pub run_id: i64,
    pub action: String,
    /// Earlier attempts that failed (the default branch could not be read).
    pub attempts: i64,
}
