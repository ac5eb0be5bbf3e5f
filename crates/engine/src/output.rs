//! Turning a step's raw output into events: lines reassembled, workflow
//! commands honoured, everything masked before it reaches the reporter.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::commands;
use crate::mask::{LineSplitter, Masker};
use crate::matcher::Matchers;
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
    /// `ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS=true`: `stop-commands`
    /// accepts an empty token, `pause-logging` or a command's name.
    pub allow_unsecure_stop: bool,
    /// `::echo::on`: commands are shown in the log as they are processed.
    echo: bool,
    pub debug: bool,
    /// Legacy `::set-output`.
    pub outputs: BTreeMap<String, String>,
    /// `::set-env` (when allowed).
    pub env: Vec<(String, String)>,
    /// `::add-path` (when allowed).
    pub paths: Vec<String>,
    /// `::save-state`.
    pub state: BTreeMap<String, String>,
    /// Errors of commands that fail the step (disabled `set-env`...), as the
    /// runner reports them: `Unable to process command '...' successfully.`
    /// then the reason.
    pub errors: Vec<String>,
    /// The job's problem matchers (`::add-matcher::`), lent to the step.
    pub matchers: Matchers,
    /// Where a relative `::add-matcher::` path is found.
    pub workspace: std::path::PathBuf,
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
            allow_unsecure_stop: false,
            echo: false,
            debug: false,
            outputs: BTreeMap::new(),
            env: Vec::new(),
            paths: Vec::new(),
            state: BTreeMap::new(),
            errors: Vec::new(),
            matchers: Matchers::default(),
            workspace: std::path::PathBuf::new(),
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

    /// An output line a registered problem matcher recognises becomes an
    /// annotation (the line itself is logged as it is).
    fn match_problems(&mut self, line: &str) {
        if self.matchers.is_empty() {
            return;
        }
        if let Some(issue) = self.matchers.line(line) {
            let mask = |s: String| self.masker.mask(&s).into_owned();
            let location = Location {
                file: issue.location.file.map(mask),
                ..issue.location
            };
            self.reporter.event(Event::Annotation {
                job: self.job.clone(),
                step: Some(self.step),
                level: issue.level,
                message: self.masker.mask(&issue.message).into_owned(),
                location,
                ts: now_ms(),
            });
        }
    }

    /// A command that could not be processed fails the step, as the runner's
    /// `ActionCommandManager` does.
    fn command_failed(&mut self, shown: &str, reason: String) {
        let shown = self.masker.mask(shown).into_owned();
        self.errors
            .push(format!("Unable to process command '{shown}' successfully."));
        self.errors.push(reason);
    }

    fn issue(&self, level: Level, message: &str) {
        self.reporter.event(Event::Annotation {
            job: self.job.clone(),
            step: Some(self.step),
            level,
            message: self.masker.mask(message).into_owned(),
            location: Location::default(),
            ts: now_ms(),
        });
    }

    /// Handles one complete line.
    pub fn line(&mut self, line: &str) {
        let cmd = commands::parse(line).filter(|c| {
            KNOWN.contains(&c.name.as_str()) || self.stop_token.as_deref() == Some(c.name.as_str())
        });
        if let Some(token) = self.stop_token.clone() {
            // Only `::TOKEN::` (the name compared ignoring case) resumes.
            match cmd {
                Some(c) if c.name.eq_ignore_ascii_case(&token) => {
                    self.log(line);
                    self.stop_token = None;
                }
                _ => self.log(line),
            }
            return;
        }
        let Some(cmd) = cmd else {
            self.log(line);
            self.match_problems(line);
            return;
        };
        // add-mask, debug and the annotations never echo their line.
        let omit_echo = matches!(
            cmd.name.as_str(),
            "add-mask" | "debug" | "error" | "warning" | "notice"
        );
        if self.echo && !omit_echo && cmd.name != "stop-commands" {
            self.log(line);
        }
        match cmd.name.as_str() {
            "add-mask" => {
                if cmd.message.trim().is_empty() {
                    self.issue(
                        Level::Warning,
                        "Can't add secret mask for empty string in ##[add-mask] command.",
                    );
                } else {
                    // Registered before anything else is printed; the line
                    // itself is not shown (it holds the secret).
                    if self.echo {
                        self.log("::add-mask::***");
                    }
                    self.masker.add(&cmd.message);
                }
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
                    end_line: num("endline"),
                    end_col: num("endcolumn"),
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
            "debug" if self.debug => self.log(&format!("##[debug]{}", cmd.message)),
            "echo" => match cmd.message.trim().to_ascii_lowercase().as_str() {
                "on" => self.echo = true,
                "off" => self.echo = false,
                _ => self.command_failed(
                    line,
                    format!(
                        "Invalid echo command value. Possible values can be: 'on', 'off'. Current value is: '{}'.",
                        cmd.message
                    ),
                ),
            },
            "stop-commands" => {
                let token = cmd.message.clone();
                let invalid = token.is_empty()
                    || token.eq_ignore_ascii_case("pause-logging")
                    || KNOWN.contains(&token.as_str());
                if invalid && !self.allow_unsecure_stop {
                    self.command_failed(line, STOP_TOKEN_REFUSED.to_string());
                    return;
                }
                // A long token is a secret of sorts: whoever knows it can
                // resume commands in output that was meant to be inert.
                if token.chars().count() > 6 {
                    self.masker.add(&token);
                }
                self.log(line);
                self.stop_token = Some(token);
            }
            "set-output" => match cmd.props.get("name").filter(|n| !n.is_empty()) {
                Some(name) => {
                    self.outputs.insert(name.clone(), cmd.message.clone());
                }
                None => self.command_failed(
                    line,
                    "Required field 'name' is missing in ##[set-output] command.".into(),
                ),
            },
            "save-state" => match cmd.props.get("name").filter(|n| !n.is_empty()) {
                Some(name) => {
                    self.state.insert(name.clone(), cmd.message.clone());
                }
                None => self.command_failed(
                    line,
                    "Required field 'name' is missing in ##[save-state] command.".into(),
                ),
            },
            "set-env" | "add-path" => {
                if !self.allow_unsecure {
                    let reason = format!(
                        "The `{}` command is disabled. Please upgrade to using Environment Files or opt into unsecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` environment variable to `true`. For more information see: https://github.blog/changelog/2020-10-01-github-actions-deprecating-set-env-and-add-path-commands/",
                        cmd.name
                    );
                    self.command_failed(line, reason);
                } else if cmd.name == "set-env" {
                    match cmd.props.get("name").filter(|n| !n.is_empty()) {
                        Some(name) if name.eq_ignore_ascii_case("NODE_OPTIONS") => self.issue(
                            Level::Error,
                            "Can't update NODE_OPTIONS environment variable using ::set-env:: command.",
                        ),
                        Some(name) => self.env.push((name.clone(), cmd.message.clone())),
                        None => self.command_failed(
                            line,
                            "Required field 'name' is missing in ##[set-env] command.".into(),
                        ),
                    }
                } else if cmd.message.is_empty() {
                    self.command_failed(line, "Parameter 'path' cannot be null or empty.".into());
                } else {
                    self.paths.push(cmd.message.clone());
                }
            }
            "add-matcher" => {
                let path = self.workspace.join(cmd.message.trim());
                let added = if cmd.message.trim().is_empty() {
                    Err("Parameter 'path' cannot be null or empty.".to_string())
                } else {
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read the problem matcher file {}: {e}", path.display()))
                        .and_then(|text| self.matchers.add(&text))
                };
                if let Err(reason) = added {
                    self.command_failed(line, reason);
                }
            }
            "remove-matcher" => match cmd.props.get("owner").filter(|o| !o.is_empty()) {
                Some(owner) => self.matchers.remove(owner),
                None => self.command_failed(
                    line,
                    "Required field 'owner' is missing in ##[remove-matcher] command.".into(),
                ),
            },
            _ => {}
        }
    }
}

/// The commands the runner registers; any other `::name::` line is output.
const KNOWN: &[&str] = &[
    "add-mask",
    "add-matcher",
    "add-path",
    "debug",
    "echo",
    "endgroup",
    "error",
    "group",
    "notice",
    "remove-matcher",
    "save-state",
    "set-env",
    "set-output",
    "stop-commands",
    "warning",
];

const STOP_TOKEN_REFUSED: &str = "You cannot use a endToken that is an empty string, the string 'pause-logging', or another workflow command. For more information see: https://docs.github.com/actions/learn-github-actions/workflow-commands-for-github-actions#example-stopping-and-starting-workflow-commands or opt into insecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS` environment variable to `true`.";
