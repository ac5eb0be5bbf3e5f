//! Turning a step's raw output into events: lines reassembled, workflow
//! commands honoured, everything masked before it reaches the reporter.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::commands;
use crate::mask::{LineSplitter, Masker};
use crate::report::{Event, Level, Location, Reporter, now_ms};

/// Per-step output state. Lives on the blocking thread that reads the pipe
/// while the step runs, and is handed back afterwards.
pub struct StepSink {
    pub job: String,
    pub step: usize,
    pub reporter: Arc<dyn Reporter>,
    pub masker: Masker,
    splitter: LineSplitter,
    /// `::stop-commands::TOKEN` is in effect until `::TOKEN::`.
    stop_token: Option<String>,
    /// `ACTIONS_ALLOW_UNSECURE_COMMANDS=true`: `set-env` and `add-path` work.
    pub allow_unsecure: bool,
    pub debug: bool,
    /// Legacy `::set-output`.
    pub outputs: BTreeMap<String, String>,
    /// `::set-env` (when allowed).
    pub env: Vec<(String, String)>,
    /// `::add-path` (when allowed).
    pub paths: Vec<String>,
    /// `::save-state`.
    pub state: BTreeMap<String, String>,
    /// A command that fails the step (disabled `set-env`...).
    pub errors: Vec<String>,
}

impl StepSink {
    pub fn new(job: &str, step: usize, reporter: Arc<dyn Reporter>, masker: Masker) -> StepSink {
        StepSink {
            job: job.to_string(),
            step,
            reporter,
            masker,
            splitter: LineSplitter::default(),
            stop_token: None,
            allow_unsecure: false,
            debug: false,
            outputs: BTreeMap::new(),
            env: Vec::new(),
            paths: Vec::new(),
            state: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    /// Feeds raw bytes from the process.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut splitter = std::mem::take(&mut self.splitter);
        splitter.feed(chunk, |line| self.line(line));
        self.splitter = splitter;
        self.reporter.flush();
    }

    /// Flushes a last line without newline.
    pub fn finish(&mut self) {
        let mut splitter = std::mem::take(&mut self.splitter);
        splitter.finish(|line| self.line(line));
        self.splitter = splitter;
        self.reporter.flush();
    }

    fn log(&self, text: &str) {
        let line = self.masker.mask(text).into_owned();
        self.reporter.event(Event::Log {
            job: self.job.clone(),
            step: Some(self.step),
            line,
            ts: now_ms(),
        });
    }

    /// Handles one complete line.
    pub fn line(&mut self, line: &str) {
        if let Some(token) = &self.stop_token {
            if line.trim() == format!("::{token}::") {
                self.stop_token = None;
            } else {
                self.log(line);
            }
            return;
        }
        let Some(cmd) = commands::parse(line) else {
            self.log(line);
            return;
        };
        match cmd.name.as_str() {
            "add-mask" => {
                // Registered before anything else is printed; the line itself
                // is not shown (it holds the secret).
                self.masker.add(&cmd.message);
            }
            "group" => self.reporter.event(Event::GroupStart {
                job: self.job.clone(),
                step: Some(self.step),
                title: self.masker.mask(&cmd.message).into_owned(),
                ts: now_ms(),
            }),
            "endgroup" => self.reporter.event(Event::GroupEnd {
                job: self.job.clone(),
                step: Some(self.step),
                ts: now_ms(),
            }),
            "error" | "warning" | "notice" => {
                let level = match cmd.name.as_str() {
                    "error" => Level::Error,
                    "warning" => Level::Warning,
                    _ => Level::Notice,
                };
                let num = |k: &str| cmd.props.get(k).and_then(|v| v.trim().parse().ok());
                let location = Location {
                    file: cmd
                        .props
                        .get("file")
                        .map(|f| self.masker.mask(f).into_owned()),
                    line: num("line"),
                    col: num("col"),
                    end_line: num("endLine"),
                    end_col: num("endColumn"),
                    title: cmd
                        .props
                        .get("title")
                        .map(|t| self.masker.mask(t).into_owned()),
                };
                self.reporter.event(Event::Annotation {
                    job: self.job.clone(),
                    step: Some(self.step),
                    level,
                    message: self.masker.mask(&cmd.message).into_owned(),
                    location,
                    ts: now_ms(),
                });
            }
            "debug" => {
                if self.debug {
                    self.log(&format!("##[debug]{}", cmd.message));
                }
            }
            "stop-commands" => {
                if !cmd.message.is_empty() {
                    self.stop_token = Some(cmd.message.clone());
                }
            }
            "set-output" => match cmd.props.get("name") {
                Some(name) => {
                    self.outputs.insert(name.clone(), cmd.message.clone());
                }
                None => self
                    .errors
                    .push("::set-output:: needs a `name` property".into()),
            },
            "save-state" => {
                if let Some(name) = cmd.props.get("name") {
                    self.state.insert(name.clone(), cmd.message.clone());
                }
            }
            "set-env" | "add-path" => {
                if !self.allow_unsecure {
                    let msg = format!(
                        "The `{}` command is disabled. Please upgrade to using Environment Files or opt into unsecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` environment variable to `true`.",
                        cmd.name
                    );
                    self.reporter.event(Event::Annotation {
                        job: self.job.clone(),
                        step: Some(self.step),
                        level: Level::Error,
                        message: msg.clone(),
                        location: Location::default(),
                        ts: now_ms(),
                    });
                    self.errors.push(msg);
                } else if cmd.name == "set-env" {
                    match cmd.props.get("name") {
                        Some(name) => self.env.push((name.clone(), cmd.message.clone())),
                        None => self
                            .errors
                            .push("::set-env:: needs a `name` property".into()),
                    }
                } else {
                    self.paths.push(cmd.message.clone());
                }
            }
            "echo" | "add-matcher" | "remove-matcher" => {}
            _ => self.log(line),
        }
    }
}
