//! Ordered, batched reporting of one job: log lines are masked, gathered into
//! chunks (flushed every 50 ms or 256 KiB, well inside the 250 ms live-log budget)
//! and uploaded with their index until acknowledged; step events go through the same
//! queue so a step never finishes before its last lines are stored.
//!
//! A chunk holds the lines of one step (its `step`; none for the job's own
//! lines): steps running at once (`background:`, `parallel:`) each gather
//! their own lines, so the server files every line under its step without
//! one upload per line when two steps interleave. Within a step the lines
//! keep their order; the job's whole log has each step's lines of one flush
//! together.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::client::Client;
use crate::protocol::{COMPLETE_JOB_STEP, Conclusion, LogUpload, Status, StepReport};

enum Msg {
    Line(Option<i64>, String),
    Step(StepReport),
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<Msg>,
    fence: i64,
    masks: Arc<Vec<String>>,
    /// The steps are done: the job's own lines are its "Complete job".
    completing: Arc<std::sync::atomic::AtomicBool>,
}

/// Secrets shorter than this are not masked: masking "a" or "1" would blank whole logs.
pub const MIN_MASK_LEN: usize = 4;

impl Reporter {
    pub fn start(client: Client, job_id: i64, fence: i64, secrets: Vec<String>) -> Reporter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(upload_loop(client, job_id, fence, rx));
        let mut masks: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_MASK_LEN)
            .collect();
        masks.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Reporter {
            tx,
            fence,
            masks: Arc::new(masks),
            completing: Default::default(),
        }
    }

    /// Every step has run: the job's own lines from now on are filed under
    /// [`COMPLETE_JOB_STEP`] rather than with its set-up.
    pub fn completing(&self) {
        self.completing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// One line of output (without its newline) of a step (`None`: of the
    /// job itself); secrets are masked here, before the line leaves this process.
    pub fn line(&self, step: Option<i64>, line: &str) {
        let mut l = line.trim_end_matches(['\n', '\r']).to_string();
        for m in self.masks.iter() {
            if l.contains(m.as_str()) {
                l = l.replace(m.as_str(), "***");
            }
        }
        let step = match step {
            None if self.completing.load(std::sync::atomic::Ordering::SeqCst) => {
                Some(COMPLETE_JOB_STEP)
            }
            s => s,
        };
        let _ = self.tx.send(Msg::Line(step, l));
    }

    pub fn step_started(&self, idx: i64, name: &str) {
        let _ = self.tx.send(Msg::Step(StepReport {
            fence: self.fence,
            idx,
            name: name.to_string(),
            status: Status::Running,
            conclusion: None,
        }));
    }

    pub fn step_finished(&self, idx: i64, name: &str, conclusion: Conclusion) {
        let _ = self.tx.send(Msg::Step(StepReport {
            fence: self.fence,
            idx,
            name: name.to_string(),
            status: Status::Completed,
            conclusion: Some(conclusion),
        }));
    }

    /// Waits until everything reported so far is acknowledged by the server.
    pub async fn finish(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const MAX_CHUNK: usize = 256 * 1024;

/// Lines gathered for one chunk of one step.
#[derive(Default)]
struct Pending {
    text: String,
    lines: i64,
}

async fn upload_loop(
    client: Client,
    job_id: i64,
    fence: i64,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    // By step, in the order each step's first pending line came.
    let mut bufs: Vec<(Option<i64>, Pending)> = Vec::new();
    let mut next_line = 0i64;
    let mut chunk = 0i64;
    let mut dead = false;
    let mut upload = async |step: Option<i64>, p: Pending, dead: &mut bool| {
        if p.text.is_empty() || *dead {
            return;
        }
        let up = LogUpload {
            fence,
            chunk,
            first_line: next_line,
            step,
            text: p.text,
        };
        if let Err(e) = client.upload_logs(job_id, &up).await {
            tracing::warn!(job_id, "log upload failed, dropping further logs: {e:#}");
            *dead = true;
        }
        chunk += 1;
        next_line += p.lines;
    };
    loop {
        let msg = if bufs.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(FLUSH_EVERY, rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    for (step, p) in std::mem::take(&mut bufs) {
                        upload(step, p, &mut dead).await;
                    }
                    continue;
                }
            }
        };
        match msg {
            Some(Msg::Line(step, l)) => {
                let i = match bufs.iter().position(|(s, _)| *s == step) {
                    Some(i) => i,
                    None => {
                        bufs.push((step, Pending::default()));
                        bufs.len() - 1
                    }
                };
                let p = &mut bufs[i].1;
                p.text.push_str(&l);
                p.text.push('\n');
                p.lines += 1;
                if p.text.len() >= MAX_CHUNK {
                    let (step, p) = bufs.remove(i);
                    upload(step, p, &mut dead).await;
                }
            }
            Some(Msg::Step(s)) => {
                for (step, p) in std::mem::take(&mut bufs) {
                    upload(step, p, &mut dead).await;
                }
                if !dead && let Err(e) = client.step(job_id, &s).await {
                    tracing::warn!(job_id, "step report failed: {e:#}");
                }
            }
            Some(Msg::Flush(done)) => {
                for (step, p) in std::mem::take(&mut bufs) {
                    upload(step, p, &mut dead).await;
                }
                let _ = done.send(());
            }
            None => {
                for (step, p) in std::mem::take(&mut bufs) {
                    upload(step, p, &mut dead).await;
                }
                return;
            }
        }
    }
}
