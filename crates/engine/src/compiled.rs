//! The compiled job: everything the engine reads to run one job (one matrix
//! leg), cut from the workflow once and serialisable. `hangar run` compiles
//! each job it runs and the server compiles each job it leases, through the
//! same [`CompiledJob::compile`], so an agent runs exactly what a local run
//! would, and never reads YAML: the job's keys arrive as a JSON tree with the
//! line and column of every key of the job and of its steps beside it, so an
//! expression that fails at run time on an agent still names its place in
//! the workflow file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::report::Location;
use crate::workflow::{Workflow, scalar_string};

/// One job (or one matrix leg) ready to run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CompiledJob {
    /// What the job reads from its workflow beyond its own mapping.
    pub workflow: CompiledWorkflow,
    pub job_id: String,
    /// Display key, unique in the run: `build`, `test (ubuntu, 18)`,
    /// `call / inner` for jobs of a called workflow.
    pub key: String,
    /// The name GitHub shows: `name:` evaluated for this leg, or the job's
    /// name with the leg's matrix values; `None`: `name:` or the job id.
    pub name: Option<String>,
    /// The job's mapping (`runs-on`, `env`, `defaults`, `steps`,
    /// `timeout-minutes`, `continue-on-error`, `outputs`...), expressions
    /// unevaluated.
    pub job: Value,
    /// Where the job's keys and its steps' keys are written.
    pub positions: JobPositions,
    /// Values of this matrix leg (`matrix` context); empty without a matrix.
    pub matrix: Map<String, Value>,
    /// `strategy` context: `fail-fast`, `job-index`, `job-total`, `max-parallel`.
    pub strategy: Map<String, Value>,
    /// `needs` context: `{ "<job>": { "result": "success", "outputs": {...} } }`.
    pub needs: Map<String, Value>,
    /// `inputs` context; `None`: the run's inputs typed by the workflow's
    /// declared ones (see [`crate::run::top_level_inputs`]).
    pub inputs: Option<Map<String, Value>>,
    /// Secrets for a job of a called workflow (else the run's secrets).
    /// Never serialised: an agent's secrets travel beside the job, each
    /// named by it (the server's assignment), not inside it.
    #[serde(skip)]
    pub secrets: Option<BTreeMap<String, String>>,
    /// A job of a called (reusable) workflow: its `github.event` is the
    /// caller's, untouched by its own inputs.
    pub called: bool,
    /// Why the job could not be compiled (its workflow no longer reads):
    /// the engine fails it with this message before any step runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The workflow-level values a job reads.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CompiledWorkflow {
    /// From the repository root, as GitHub names it (`.github/workflows/ci.yml`).
    pub path: String,
    /// `name:` or the path (`github.workflow`).
    pub name: String,
    /// The workflow's `env:`, the lowest layer of the job's env.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Value>,
    /// The workflow's `defaults:` (a job's own come first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Value>,
}

impl CompiledWorkflow {
    pub fn of(wf: &Workflow) -> CompiledWorkflow {
        CompiledWorkflow {
            path: crate::workflow::repo_path(&wf.path),
            name: wf.name.clone(),
            env: wf.doc.get("env").cloned(),
            defaults: wf.doc.get("defaults").cloned(),
        }
    }
}

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A mapping's own position and where each of its keys' values is written.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KeyPositions {
    pub at: Pos,
    #[serde(default)]
    pub keys: BTreeMap<String, Pos>,
}

impl KeyPositions {
    fn of(node: &hangar_workflow::yaml::Node) -> KeyPositions {
        let pos = |p: hangar_workflow::yaml::Pos| Pos {
            line: p.line,
            column: p.column,
        };
        KeyPositions {
            at: pos(node.pos),
            keys: node
                .entries()
                .iter()
                .map(|(k, v)| (k.name.clone(), pos(v.pos)))
                .collect(),
        }
    }

    /// Where `key`'s value is written; the mapping itself without it.
    fn position(&self, key: &str) -> Pos {
        self.keys.get(key).copied().unwrap_or(self.at)
    }
}

/// The positions of a job's keys and of each of its steps' keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct JobPositions {
    pub job: KeyPositions,
    #[serde(default)]
    pub steps: Vec<KeyPositions>,
}

impl CompiledJob {
    /// Job `job_id` of `wf` with no matrix leg, needs or overrides: the
    /// caller fills those in for the leg it runs.
    pub fn compile(wf: &Workflow, job_id: &str) -> Result<CompiledJob, String> {
        let job = wf.job(job_id).cloned().ok_or_else(|| {
            format!(
                "job '{job_id}' not found in {}",
                crate::workflow::repo_path(&wf.path)
            )
        })?;
        let node = wf
            .tree
            .get("jobs")
            .and_then(|jobs| jobs.entries().iter().find(|(k, _)| k.name == job_id))
            .map(|(_, n)| n);
        let positions = node
            .map(|n| JobPositions {
                job: KeyPositions::of(n),
                steps: n
                    .get("steps")
                    .map(|s| s.items().iter().map(KeyPositions::of).collect())
                    .unwrap_or_default(),
            })
            .unwrap_or_default();
        Ok(CompiledJob {
            workflow: CompiledWorkflow::of(wf),
            job_id: job_id.to_string(),
            key: job_id.to_string(),
            name: None,
            job,
            positions,
            matrix: Map::new(),
            strategy: Map::new(),
            needs: Map::new(),
            inputs: None,
            secrets: None,
            called: false,
            error: None,
        })
    }

    /// A job whose workflow could not be compiled: running it fails at once
    /// with `message`, as a job of `hangar run` that cannot be planned does.
    pub fn failed(path: &str, job_id: &str, message: String) -> CompiledJob {
        CompiledJob {
            workflow: CompiledWorkflow {
                path: path.to_string(),
                name: path.to_string(),
                env: None,
                defaults: None,
            },
            job_id: job_id.to_string(),
            key: job_id.to_string(),
            name: None,
            job: Value::Object(Map::new()),
            positions: JobPositions::default(),
            matrix: Map::new(),
            strategy: Map::new(),
            needs: Map::new(),
            inputs: None,
            secrets: None,
            called: false,
            error: Some(message),
        }
    }

    /// Where `key` of the job (or of its step number `step`) is written, as
    /// an annotation's location; the job's or step's own position when the
    /// key is absent, nothing when the step is unknown.
    pub fn location(&self, step: Option<usize>, key: &str) -> Location {
        let keys = match step {
            None => Some(&self.positions.job),
            Some(i) => self.positions.steps.get(i),
        };
        match keys.map(|k| k.position(key)) {
            Some(p) if p.line > 0 => Location {
                file: Some(self.workflow.path.clone()),
                line: u32::try_from(p.line).ok(),
                col: u32::try_from(p.column).ok(),
                ..Default::default()
            },
            _ => Location::default(),
        }
    }

    /// The name shown for the job: the leg's, else `name:`, else the id.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.job
                .get("name")
                .and_then(scalar_string)
                .unwrap_or_else(|| self.job_id.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const WF: &str = "name: CI
on: push
env:
  A: 1
jobs:
  build:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    steps:
      - run: echo one
      - name: two
        run: echo ${{ fromJSON('x') }}
";

    /// The compiled job survives JSON both ways unchanged (what crosses the
    /// wire to an agent is what the engine runs), and keeps the positions of
    /// each step's keys.
    #[test]
    fn a_compiled_job_round_trips_with_its_positions() {
        let wf = Workflow::parse(Path::new("/r/.github/workflows/ci.yml"), WF).unwrap();
        let mut job = CompiledJob::compile(&wf, "build").unwrap();
        job.matrix.insert("os".into(), Value::from("linux"));
        let text = serde_json::to_string(&job).unwrap();
        let back: CompiledJob = serde_json::from_str(&text).unwrap();
        assert_eq!(back, job);
        assert_eq!(back.workflow.path, ".github/workflows/ci.yml");
        assert_eq!(back.workflow.name, "CI");
        assert_eq!(back.workflow.env, Some(serde_json::json!({"A": 1})));
        let at = back.location(Some(1), "run");
        assert_eq!(
            (at.file.as_deref(), at.line, at.col),
            (Some(".github/workflows/ci.yml"), Some(12), Some(14))
        );
        let at = back.location(None, "timeout-minutes");
        assert_eq!((at.line, at.col), (Some(8), Some(22)));
        // An absent key points at its step.
        let at = back.location(Some(0), "shell");
        assert_eq!((at.line, at.col), (Some(10), Some(9)));
        assert_eq!(back.location(Some(7), "run"), Location::default());
    }

    #[test]
    fn secrets_never_travel_inside_a_compiled_job() {
        let wf = Workflow::parse(Path::new("w.yml"), WF).unwrap();
        let mut job = CompiledJob::compile(&wf, "build").unwrap();
        job.secrets = Some([("T".to_string(), "s3cret".to_string())].into());
        let text = serde_json::to_string(&job).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn an_unknown_job_is_an_error_naming_the_file() {
        let wf = Workflow::parse(Path::new("/r/.github/workflows/ci.yml"), WF).unwrap();
        let e = CompiledJob::compile(&wf, "nope").unwrap_err();
        assert_eq!(e, "job 'nope' not found in .github/workflows/ci.yml");
    }
}
