//! Structured events a running job emits, and the [`Reporter`] that receives them.
//!
//! Every text in an event has already gone through the job's masker: a reporter
//! may print, store or send events as they are.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How a step or job ended: the one enum engine, store, agent protocol and
/// server share. `Skipped` steps did not run (their `if:` was false).
pub use hangar_status::Conclusion;

/// Severity of an annotation (`::error::`, `::warning::`, `::notice::`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
    Notice,
}

/// Where an annotation points (all optional, as in the workflow command).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub col: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_col: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// One thing that happened in a job. `job` is the job's display key (e.g. `build`
/// or `test (ubuntu, 18)` for a matrix leg); `step` is the index in the job's
/// step list including pre/post steps, in the order they were started.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    JobStarted {
        job: String,
        name: String,
        ts: u64,
    },
    StepStarted {
        job: String,
        step: usize,
        name: String,
        ts: u64,
    },
    StepFinished {
        job: String,
        step: usize,
        name: String,
        /// Result before `continue-on-error` (GitHub's `steps.<id>.outcome`).
        outcome: Conclusion,
        /// Result after `continue-on-error` (`steps.<id>.conclusion`).
        conclusion: Conclusion,
        duration_ms: u64,
        ts: u64,
    },
    /// Every step, post steps included, has run: what the job says from
    /// now on (its timeout, its orphans ended, its outputs) is GitHub's
    /// "Complete job", not its set-up.
    JobCompleting {
        job: String,
        ts: u64,
    },
    Log {
        job: String,
        step: Option<usize>,
        line: String,
        ts: u64,
    },
    Annotation {
        job: String,
        step: Option<usize>,
        level: Level,
        message: String,
        #[serde(flatten)]
        location: Location,
        ts: u64,
    },
    GroupStart {
        job: String,
        step: Option<usize>,
        title: String,
        ts: u64,
    },
    GroupEnd {
        job: String,
        step: Option<usize>,
        ts: u64,
    },
    /// Markdown a step appended to `GITHUB_STEP_SUMMARY`.
    Summary {
        job: String,
        step: usize,
        markdown: String,
        ts: u64,
    },
    JobOutputs {
        job: String,
        outputs: BTreeMap<String, String>,
        ts: u64,
    },
    /// A remote `uses:` resolved to a commit and made available from the action
    /// cache (GitHub's "Download action repository 'X' (SHA:Y)"). `source` is
    /// the forge's URL without credentials; `cached` when nothing was downloaded.
    ActionResolved {
        job: String,
        uses: String,
        commit: String,
        source: String,
        cached: bool,
        ts: u64,
    },
    JobFinished {
        job: String,
        result: Conclusion,
        duration_ms: u64,
        ts: u64,
    },
}

impl Event {
    pub fn job(&self) -> &str {
        match self {
            Event::JobStarted { job, .. }
            | Event::StepStarted { job, .. }
            | Event::StepFinished { job, .. }
            | Event::JobCompleting { job, .. }
            | Event::Log { job, .. }
            | Event::Annotation { job, .. }
            | Event::GroupStart { job, .. }
            | Event::GroupEnd { job, .. }
            | Event::Summary { job, .. }
            | Event::JobOutputs { job, .. }
            | Event::ActionResolved { job, .. }
            | Event::JobFinished { job, .. } => job,
        }
    }
}

/// Receives a job's events. Called from the job's tasks and from blocking
/// threads reading step output, so implementations must be cheap and thread-safe.
pub trait Reporter: Send + Sync {
    fn event(&self, event: Event);

    /// A batch of output has been delivered: a buffering reporter writes it out
    /// now (called once per chunk read from a step, not once per line).
    fn flush(&self) {}
}

/// Discards everything (planning tests, dry runs).
pub struct NullReporter;

impl Reporter for NullReporter {
    fn event(&self, _event: Event) {}
}

/// Collects events in memory (tests, the agent's batching).
#[derive(Default)]
pub struct MemoryReporter {
    pub events: std::sync::Mutex<Vec<Event>>,
}

impl MemoryReporter {
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// All log lines, in order.
    pub fn lines(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|e| match e {
                Event::Log { line, .. } => Some(line.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Reporter for MemoryReporter {
    fn event(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
