//! The agent ↔ server contract, shared by remote agents and the embedded one.
//!
//! An agent first registers with a token (`POST /api/v1/agents/register`)
//! and is given an id and a credential of its own; every later call
//! authenticates with that credential, never the token. Removing the agent
//! deletes the credential: its next call is answered 401, and the agent stops.
//!
//! Every call after a poll carries the job's fencing token (`fence`) and the
//! lease's key in the `X-Hangar-Lease` header. The server refuses calls with a
//! stale fence with HTTP 409: the lease was taken away (the agent was presumed
//! dead) and the agent must stop the job at once; a call without the key of the
//! lease (another agent's token, a guessed fence) is refused with 403.
//!
//! | call | path | semantics |
//! |---|---|---|
//! | register | `POST /api/v1/agents/register` | with an `agent` (or admin) token: 201 with a [`RegisterResponse`]; 409 `token_used` for a single-use token that registered an agent already, 409 `protocol_mismatch` as for a poll |
//! | poll | `POST /api/v1/agent/poll` | long-poll up to `wait_ms`; 200 with an [`Assignment`] or 204; 409 `protocol_mismatch` for an agent of another [`PROTOCOL_VERSION`]. Idle polls write nothing. |
//! | heartbeat | `POST /api/v1/agent/jobs/{id}/heartbeat` | extends the lease; answers whether a cancel was requested |
//! | logs | `POST /api/v1/agent/jobs/{id}/logs` | one chunk of one step's lines (`step`; none for the job's own); idempotent on `chunk`; the answer acknowledges it |
//! | step | `POST /api/v1/agent/jobs/{id}/steps` | a step started or finished |
//! | complete | `POST /api/v1/agent/jobs/{id}/complete` | the job's conclusion and outputs |
//! | deploy | `POST /api/v1/jobs/{id}/deploy`, `GET .../deploy/{op}` | a `hangar/deploy` step of the job, authenticated by [`Assignment::deploy`]'s key in `X-Hangar-Deploy` (no bearer token): the server deploys the job's own environment of its watched project at the job's commit |
//! | refuse | `POST /api/v1/agent/jobs/{id}/refuse` | the agent will not run an assignment of another [`PROTOCOL_VERSION`] ([`RefuseRequest`]): the job goes back to the queue at once, or fails saying why when no other agent can take it |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use hangar_engine::{CompiledJob, JobDeploy};
pub use hangar_status::{Conclusion, Status};

/// The version of this contract. Server and agent are the same binary
/// version: an assignment's shape (the [`CompiledJob`]) changes with the
/// engine, so a server refuses the poll of an agent speaking another
/// version, naming both, rather than lease it a job it would misread.
/// Raise it with any change of [`Assignment`] or [`CompiledJob`].
/// 3: agents register and authenticate with their own credential.
/// 4: assignments carry the job's deployment grant (`deploy`).
pub const PROTOCOL_VERSION: u32 = 4;

/// The hangar release this binary is, said beside [`PROTOCOL_VERSION`] so a
/// refusal names what to upgrade.
pub const HANGAR_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollRequest {
    /// [`PROTOCOL_VERSION`] of the agent; absent (0) from agents older than
    /// the compiled job, which the server refuses.
    #[serde(default)]
    pub protocol_version: u32,
    /// [`HANGAR_VERSION`] of the agent, for the refusal's message.
    #[serde(default)]
    pub hangar_version: String,
    pub agent_id: String,
    pub name: String,
    pub labels: Vec<String>,
    pub capacity: i64,
    pub free_slots: i64,
    pub wait_ms: u64,
}

/// `POST /api/v1/agents/register`, with the registration token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    #[serde(default)]
    pub protocol_version: u32,
    #[serde(default)]
    pub hangar_version: String,
    /// The id the agent would like (the server may give another: one taken,
    /// or not made of letters, digits, `.`, `_` and `-`, is not used).
    #[serde(default)]
    pub agent_id: String,
    pub name: String,
    pub labels: Vec<String>,
    pub capacity: i64,
}

/// The registered agent: its id and its credential, which the server keeps
/// only as a hash and shows this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub agent_id: String,
    pub credential: String,
}

/// The code of a single-use token's second registration (HTTP 409).
pub const TOKEN_USED: &str = "token_used";

/// Why a server refuses an agent of another protocol version, naming both.
pub fn version_mismatch(
    agent_protocol: u32,
    agent_version: &str,
    server_protocol: u32,
    server_version: &str,
) -> String {
    let release = |v: &str| {
        if v.is_empty() {
            "an older hangar".to_string()
        } else {
            format!("hangar {v}")
        }
    };
    format!(
        "this agent speaks agent protocol {agent_protocol} ({}), the server speaks \
         protocol {server_protocol} ({}): run the same hangar version on the server and \
         its agents",
        release(agent_version),
        release(server_version)
    )
}

/// A leased job with everything needed to run it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    /// The server's [`PROTOCOL_VERSION`]; the agent refuses to run a job
    /// of another version.
    #[serde(default)]
    pub protocol_version: u32,
    /// The server's [`HANGAR_VERSION`].
    #[serde(default)]
    pub hangar_version: String,
    pub job_id: i64,
    pub run_id: i64,
    pub fence: i64,
    /// The job's attempt: how many times it was leased (retries after a lost
    /// agent, re-runs).
    pub attempt: i64,
    /// The run's attempt (`github.run_attempt`): 1, then one more per re-run.
    /// Absent from older servers.
    #[serde(default)]
    pub run_attempt: Option<i64>,
    /// `github.run_number`, counted per workflow. Absent from older servers.
    #[serde(default)]
    pub run_number: Option<i64>,
    pub lease_ms: i64,
    pub job_key: String,
    pub job_name: String,
    /// The job as the engine runs it: its keys with their positions in the
    /// workflow file, this leg's matrix values, `strategy`, `needs` (the
    /// results and outputs of the jobs it needs) and `inputs`. Compiled by
    /// the server as `hangar run` compiles it; the agent reads no YAML.
    pub job: CompiledJob,
    pub event_name: String,
    pub event: serde_json::Value,
    pub clone_url: String,
    pub sha: String,
    pub git_ref: String,
    pub repository: String,
    pub secrets: BTreeMap<String, String>,
    pub vars: BTreeMap<String, String>,
    /// Variables of the services the server offers the job's steps (GitHub's
    /// cache and artifact services: `ACTIONS_RESULTS_URL`,
    /// `ACTIONS_RUNTIME_TOKEN`, ...). Absent from older servers.
    #[serde(default)]
    pub services_env: BTreeMap<String, String>,
    /// Proof of this lease, sent back as `X-Hangar-Lease` on every call about
    /// the job: 128 bits the server derives from a secret only it knows, the
    /// job, the attempt's fence, the agent and its token. Another agent (or the
    /// same token for another agent id) cannot produce it.
    #[serde(default)]
    pub lease_key: String,
    /// What the server has to say about the run, printed first in the job's
    /// log (e.g. that a pull request builds its head because the forge offers
    /// no merge commit). Absent from older servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    /// How the job's `hangar/deploy` steps deploy (protocol 4): through
    /// this server with a key for this attempt alone, or not at all, and
    /// why. Never a general token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<JobDeploy>,
}

/// An agent's refusal of an assignment it cannot run: the server's
/// [`PROTOCOL_VERSION`] is not its own. Sent at once, so the job does not
/// stay leased to an agent that will never run it until the lease expires.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefuseRequest {
    pub fence: i64,
    /// The agent's [`PROTOCOL_VERSION`] and [`HANGAR_VERSION`].
    pub protocol_version: u32,
    #[serde(default)]
    pub hangar_version: String,
    /// Why, in words (the agent's [`version_mismatch`]).
    #[serde(default)]
    pub reason: String,
}

/// The code of the server's refusal of an agent of another protocol
/// version (HTTP 409).
pub const PROTOCOL_MISMATCH: &str = "protocol_mismatch";

/// The header that carries [`Assignment::lease_key`].
pub const LEASE_HEADER: &str = "x-hangar-lease";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FenceOnly {
    pub fence: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub cancel: bool,
}

/// The `step` of the job's own lines once its steps are done (its timeout,
/// its orphans ended, what the agent says after the run): GitHub's
/// "Complete job", kept apart from the set-up lines (no step).
pub const COMPLETE_JOB_STEP: i64 = -1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogUpload {
    pub fence: i64,
    pub chunk: i64,
    /// The number of the chunk's first line in the job's whole log (from 0).
    pub first_line: i64,
    /// The step every line of the chunk belongs to ([`StepReport::idx`], or
    /// [`COMPLETE_JOB_STEP`]); absent for the job's set-up lines and from agents older than
    /// step logs, whose chunks the server keeps as lines of no step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    /// Newline-terminated lines.
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogAck {
    pub chunk: i64,
    pub stored: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    pub fence: i64,
    pub idx: i64,
    pub name: String,
    /// `running` or `completed`.
    pub status: Status,
    pub conclusion: Option<Conclusion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteRequest {
    pub fence: i64,
    pub conclusion: Conclusion,
    pub outputs: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk of an agent from before step logs (no `step`) is still read,
    /// as lines of no step; a chunk of no step is sent as one of those was.
    #[test]
    fn a_chunk_without_a_step_is_read_as_lines_of_no_step() {
        let old: LogUpload =
            serde_json::from_str(r#"{"fence":1,"chunk":0,"first_line":0,"text":"a\n"}"#).unwrap();
        assert_eq!(old.step, None);
        let sent = serde_json::to_value(&old).unwrap();
        assert!(sent.get("step").is_none(), "{sent}");
        let new = LogUpload {
            step: Some(3),
            ..old
        };
        assert_eq!(serde_json::to_value(&new).unwrap()["step"], 3);
    }
}
