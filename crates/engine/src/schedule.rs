//! The scheduling policy of a run, once, for `hangar run` and for the server.
//!
//! Pure and synchronous: no I/O, no clock. Given the `needs` graph of a
//! workflow ([`Graph`], refused when a job needs an unknown job or the needs
//! form a cycle) and the state of every job, [`Graph::decide`] answers which
//! waiting jobs may run now, which are skipped (and why), which fail (a bad
//! `if:`), and which still wait (on which jobs). Whoever drives it (the
//! engine's run loop, the server's `advance_run`) does the work the answer
//! asks for and persists the states; nothing else decides.
//!
//! Matrix legs of a job share its node: the node is done when every leg is
//! ([`State::of_legs`]), and its conclusion is the legs' aggregate.

use std::collections::{BTreeMap, HashMap};

use hangar_expr::{Host, StatusFunction};

use crate::report::Conclusion;

/// Where a job of the graph stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not decided yet: its needs run, or the driver has not asked yet.
    Waiting,
    /// Decided to run (queued, leased or running, legs in flight).
    Running,
    /// Finished with this conclusion (skipped jobs included).
    Done(Conclusion),
}

impl State {
    /// The state of a job from its matrix legs: waiting while every leg
    /// waits, done when every leg is done (failure over cancelled over
    /// success; skipped only when every leg was skipped), running otherwise.
    pub fn of_legs(legs: impl IntoIterator<Item = State>) -> State {
        let legs: Vec<State> = legs.into_iter().collect();
        if legs.iter().all(|s| *s == State::Waiting) {
            return State::Waiting;
        }
        let mut done = Vec::new();
        for s in &legs {
            match s {
                State::Done(c) => done.push(*c),
                _ => return State::Running,
            }
        }
        State::Done(aggregate(done))
    }
}

/// The conclusion of a job from its legs' conclusions.
pub fn aggregate(legs: impl IntoIterator<Item = Conclusion>) -> Conclusion {
    let legs: Vec<Conclusion> = legs.into_iter().collect();
    if legs.contains(&Conclusion::Failure) {
        Conclusion::Failure
    } else if legs.contains(&Conclusion::Cancelled) {
        Conclusion::Cancelled
    } else if !legs.is_empty() && legs.iter().all(|c| *c == Conclusion::Skipped) {
        Conclusion::Skipped
    } else {
        Conclusion::Success
    }
}

/// What a waiting job does now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Its needs are done and its `if:` holds: start it (expand its matrix,
    /// ask for approvals, queue its legs).
    Run,
    /// Concluded `skipped` without running, for this reason.
    Skip(String),
    /// Concluded `failure` without running (its `if:` cannot be evaluated).
    Fail(String),
    /// Some needed jobs are not done: these.
    Wait(Vec<String>),
}

/// Why a graph cannot be scheduled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GraphError {
    /// `job` needs `missing`, which is not a job of the workflow.
    UnknownNeed { job: String, missing: String },
    /// The jobs of `cycle` need each other; the first is repeated at its end.
    Cycle(Vec<String>),
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GraphError::UnknownNeed { job, missing } => write!(
                f,
                "job '{job}' needs '{missing}', which is not a job of this workflow"
            ),
            // Worded as `hangar validate` (and GitHub) word it.
            GraphError::Cycle(c) => write!(
                f,
                "Job '{}' depends on job '{}' which creates a cycle in the dependency graph: {}",
                c[0],
                c.get(1).unwrap_or(&c[0]),
                c.join(" -> ")
            ),
        }
    }
}

/// The `needs` graph of one workflow's jobs, checked: every need exists and
/// there is no cycle. Nodes are kept in an order where a job comes after
/// every job it needs.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Topological order; ties in the order the jobs were given.
    order: Vec<String>,
    needs: HashMap<String, Vec<String>>,
    /// Every job each job depends on, directly or not.
    ancestors: HashMap<String, Vec<String>>,
}

impl Graph {
    /// Checks and orders `jobs` (job id, the ids it needs), given in the
    /// workflow's order.
    pub fn new(jobs: impl IntoIterator<Item = (String, Vec<String>)>) -> Result<Graph, GraphError> {
        let jobs: Vec<(String, Vec<String>)> = jobs.into_iter().collect();
        let needs: HashMap<String, Vec<String>> = jobs.iter().cloned().collect();
        for (id, n) in &jobs {
            if let Some(missing) = n.iter().find(|d| !needs.contains_key(*d)) {
                return Err(GraphError::UnknownNeed {
                    job: id.clone(),
                    missing: missing.clone(),
                });
            }
        }
        if let Some(cycle) = find_cycle(&jobs, &needs) {
            return Err(GraphError::Cycle(cycle));
        }
        // Kahn's order, stable in the given order.
        let mut order: Vec<String> = Vec::with_capacity(jobs.len());
        let mut placed: HashMap<&str, ()> = HashMap::new();
        while order.len() < jobs.len() {
            for (id, n) in &jobs {
                if !placed.contains_key(id.as_str())
                    && n.iter().all(|d| placed.contains_key(d.as_str()))
                {
                    placed.insert(id, ());
                    order.push(id.clone());
                }
            }
        }
        let mut ancestors: HashMap<String, Vec<String>> = HashMap::new();
        for id in &order {
            let mut all: Vec<String> = Vec::new();
            for d in &needs[id] {
                for a in ancestors[d].iter().chain(std::iter::once(d)) {
                    if !all.contains(a) {
                        all.push(a.clone());
                    }
                }
            }
            ancestors.insert(id.clone(), all);
        }
        Ok(Graph {
            order,
            needs,
            ancestors,
        })
    }

    /// Job ids, each after the jobs it needs.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The jobs `id` needs directly.
    pub fn needs(&self, id: &str) -> &[String] {
        self.needs.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The jobs `id` depends on, directly or through other jobs.
    pub fn ancestors(&self, id: &str) -> &[String] {
        self.ancestors.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// `id` and every job that depends on it, directly or not.
    pub fn dependents_of(&self, id: &str) -> Vec<String> {
        self.order
            .iter()
            .filter(|j| *j == id || self.ancestors(j).iter().any(|a| a == id))
            .cloned()
            .collect()
    }

    /// Decides every waiting job of `states` (jobs absent from it are
    /// waiting). A job is decided once all its needs are done; `condition`
    /// answers its `if:` (default `success()`) with the [`StatusHost`] the
    /// scheduler built for it, or a message when the `if:` cannot be
    /// evaluated. Skips and failures are written into `states` as they are
    /// decided, so a chain of dependents is settled in this one call (a job
    /// after a skipped job is itself skipped now, not on some later event);
    /// jobs decided to run become [`State::Running`].
    ///
    /// `cancelled` is whether the run was cancelled (`cancelled()` is then
    /// true and `success()`/`failure()` false).
    pub fn decide(
        &self,
        states: &mut BTreeMap<String, State>,
        cancelled: bool,
        condition: &mut dyn FnMut(&str, &StatusHost) -> Result<bool, String>,
    ) -> Vec<(String, Decision)> {
        let mut out = Vec::new();
        for id in &self.order {
            let state = states.get(id).copied().unwrap_or(State::Waiting);
            if state != State::Waiting {
                continue;
            }
            let pending: Vec<String> = self
                .needs(id)
                .iter()
                .filter(|n| !matches!(states.get(*n), Some(State::Done(_))))
                .cloned()
                .collect();
            if !pending.is_empty() {
                out.push((id.clone(), Decision::Wait(pending)));
                continue;
            }
            let concluded = |ids: &[String]| -> BTreeMap<String, Conclusion> {
                ids.iter()
                    .filter_map(|n| match states.get(n) {
                        Some(State::Done(c)) => Some((n.clone(), *c)),
                        _ => None,
                    })
                    .collect()
            };
            let host = StatusHost {
                needs: concluded(self.needs(id)),
                ancestors: concluded(self.ancestors(id)),
                cancelled,
            };
            let (decision, next) = match condition(id, &host) {
                Ok(true) => (Decision::Run, State::Running),
                Ok(false) => {
                    let why = match host.needs.iter().find(|(_, c)| **c != Conclusion::Success) {
                        Some((need, c)) => {
                            format!("needed job `{need}` did not succeed ({c})")
                        }
                        None => "its `if:` condition is false".to_string(),
                    };
                    (Decision::Skip(why), State::Done(Conclusion::Skipped))
                }
                Err(e) => (Decision::Fail(e), State::Done(Conclusion::Failure)),
            };
            states.insert(id.clone(), next);
            out.push((id.clone(), decision));
        }
        out
    }
}

/// A cycle of `needs`, first job repeated at the end, found from the first
/// job (in the given order) that is on one, as `hangar validate` finds it.
fn find_cycle(
    jobs: &[(String, Vec<String>)],
    needs: &HashMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    // Iterative depth-first search: a hostile workflow's depth does not
    // reach the thread's stack.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Closed,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    for (root, _) in jobs {
        if marks.contains_key(root.as_str()) {
            continue;
        }
        // (node, index of the next need to visit)
        let mut stack: Vec<(&str, usize)> = vec![(root.as_str(), 0)];
        marks.insert(root, Mark::Open);
        while let Some((node, i)) = stack.last().copied() {
            let Some(next) = needs[node].get(i) else {
                marks.insert(node, Mark::Closed);
                stack.pop();
                continue;
            };
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            match marks.get(next.as_str()) {
                Some(Mark::Closed) => {}
                Some(Mark::Open) => {
                    let start = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|(n, _)| n.to_string()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                None => {
                    marks.insert(next, Mark::Open);
                    stack.push((next, 0));
                }
            }
        }
    }
    None
}

/// Status functions of a job's `if:`: `success()` and `failure()` look at
/// every job it depends on (GitHub's rule: a job after an `always()` job
/// whose own need failed is still skipped by default); `success('a')` and
/// `failure('a')` at the named jobs; `cancelled()` at the run.
#[derive(Clone, Debug, Default)]
pub struct StatusHost {
    pub needs: BTreeMap<String, Conclusion>,
    pub ancestors: BTreeMap<String, Conclusion>,
    pub cancelled: bool,
}

impl StatusHost {
    fn check(&self, f: StatusFunction, all: &[Conclusion]) -> bool {
        match f {
            StatusFunction::Always => true,
            StatusFunction::Cancelled => self.cancelled,
            StatusFunction::Success => {
                !self.cancelled && all.iter().all(|c| *c == Conclusion::Success)
            }
            StatusFunction::Failure => !self.cancelled && all.contains(&Conclusion::Failure),
        }
    }
}

impl Host for StatusHost {
    fn status(&self, f: StatusFunction) -> bool {
        let all: Vec<Conclusion> = self.ancestors.values().copied().collect();
        self.check(f, &all)
    }

    fn status_of(&self, f: StatusFunction, jobs: &[String]) -> bool {
        let all: Vec<Conclusion> = jobs
            .iter()
            .map(|j| {
                self.needs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(j))
                    .map(|(_, c)| *c)
                    .unwrap_or(Conclusion::Skipped)
            })
            .collect();
        self.check(f, &all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_expr::Condition;

    fn graph(jobs: &[(&str, &[&str])]) -> Result<Graph, GraphError> {
        Graph::new(
            jobs.iter()
                .map(|(id, n)| (id.to_string(), n.iter().map(|s| s.to_string()).collect())),
        )
    }

    /// Decides with each job's `if:` from `ifs` (default `success()`).
    fn decide(
        g: &Graph,
        states: &mut BTreeMap<String, State>,
        ifs: &[(&str, &str)],
    ) -> Vec<(String, Decision)> {
        g.decide(states, false, &mut |id, host| {
            let text = ifs.iter().find(|(j, _)| *j == id).map_or("", |(_, t)| t);
            let cond = Condition::parse(text).map_err(|e| e.message)?;
            cond.eval(&hangar_expr::Contexts::new(), host)
                .map_err(|e| e.to_string())
        })
    }

    fn done(c: Conclusion) -> State {
        State::Done(c)
    }

    #[test]
    fn a_chain_after_a_failure_is_skipped_at_once() {
        // a fails; b needs a; c needs b: both skipped in one decision, so
        // nothing is left waiting for a job that will never run.
        let g = graph(&[("a", &[]), ("b", &["a"]), ("c", &["b"])]).unwrap();
        let mut s = BTreeMap::from([("a".to_string(), done(Conclusion::Failure))]);
        let d = decide(&g, &mut s, &[]);
        assert!(matches!(&d[0], (j, Decision::Skip(why)) if j == "b" && why.contains("`a`")));
        assert!(matches!(&d[1], (j, Decision::Skip(why)) if j == "c" && why.contains("`b`")));
        assert_eq!(s["c"], done(Conclusion::Skipped));
    }

    #[test]
    fn status_functions_look_at_every_ancestor() {
        // b runs always() after a failed a; c (default success()) is still
        // skipped, d with failure() runs, e with success('b') runs.
        let g = graph(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("d", &["b"]),
            ("e", &["b"]),
        ])
        .unwrap();
        let mut s = BTreeMap::from([
            ("a".to_string(), done(Conclusion::Failure)),
            ("b".to_string(), done(Conclusion::Success)),
        ]);
        let d = decide(&g, &mut s, &[("d", "failure()"), ("e", "success('b')")]);
        assert!(matches!(&d[0], (j, Decision::Skip(_)) if j == "c"));
        assert_eq!(d[1], ("d".into(), Decision::Run));
        assert_eq!(d[2], ("e".into(), Decision::Run));
        assert_eq!(s["d"], State::Running);
    }

    #[test]
    fn waiting_jobs_name_what_they_wait_for() {
        let g = graph(&[("a", &[]), ("b", &[]), ("c", &["a", "b"])]).unwrap();
        let mut s = BTreeMap::from([
            ("a".to_string(), State::Running),
            ("b".to_string(), done(Conclusion::Success)),
        ]);
        let d = decide(&g, &mut s, &[]);
        assert_eq!(d, vec![("c".into(), Decision::Wait(vec!["a".into()]))]);
    }

    #[test]
    fn a_bad_condition_fails_the_job_and_skips_its_dependents() {
        let g = graph(&[("a", &[]), ("b", &["a"])]).unwrap();
        let mut s = BTreeMap::new();
        let d = decide(&g, &mut s, &[("a", "success(")]);
        assert!(matches!(&d[0], (j, Decision::Fail(_)) if j == "a"));
        assert!(matches!(&d[1], (j, Decision::Skip(_)) if j == "b"));
    }

    #[test]
    fn cancellation_runs_only_always_and_cancelled_jobs() {
        let g = graph(&[("a", &[]), ("b", &["a"]), ("c", &["a"])]).unwrap();
        let mut s = BTreeMap::from([("a".to_string(), done(Conclusion::Cancelled))]);
        let d = g.decide(&mut s, true, &mut |id, host| {
            Ok(if id == "c" {
                host.status(StatusFunction::Always)
            } else {
                host.status(StatusFunction::Success)
            })
        });
        assert!(matches!(&d[0], (j, Decision::Skip(_)) if j == "b"));
        assert_eq!(d[1], ("c".into(), Decision::Run));
    }

    #[test]
    fn cycles_are_named_as_validate_names_them() {
        let e = graph(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"])]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Job 'a' depends on job 'c' which creates a cycle in the dependency graph: a -> c -> b -> a"
        );
        let e = graph(&[("a", &["a"])]).unwrap_err();
        assert_eq!(e, GraphError::Cycle(vec!["a".into(), "a".into()]));
        let e = graph(&[("a", &["nope"])]).unwrap_err();
        assert!(e.to_string().contains("'nope'"), "{e}");
    }

    #[test]
    fn a_deep_chain_neither_overflows_nor_takes_long() {
        let n = 20_000;
        let jobs: Vec<(String, Vec<String>)> = (0..n)
            .map(|i| {
                let needs = if i == 0 {
                    vec![format!("j{}", n - 1)]
                } else {
                    vec![format!("j{}", i - 1)]
                };
                (format!("j{i}"), needs)
            })
            .collect();
        assert!(matches!(Graph::new(jobs), Err(GraphError::Cycle(c)) if c.len() == n + 1));
    }

    #[test]
    fn order_puts_needs_first_and_dependents_follow() {
        let g = graph(&[("c", &["a", "b"]), ("a", &[]), ("b", &["a"])]).unwrap();
        assert_eq!(g.order(), ["a", "b", "c"]);
        assert_eq!(g.ancestors("c"), ["a", "b"]);
        assert_eq!(g.dependents_of("b"), ["b", "c"]);
    }

    #[test]
    fn legs_aggregate_into_their_job() {
        use Conclusion::*;
        assert_eq!(
            State::of_legs([State::Waiting, State::Waiting]),
            State::Waiting
        );
        assert_eq!(
            State::of_legs([done(Success), State::Waiting]),
            State::Running
        );
        assert_eq!(
            State::of_legs([done(Success), done(Failure)]),
            done(Failure)
        );
        assert_eq!(
            State::of_legs([done(Skipped), done(Skipped)]),
            done(Skipped)
        );
        assert_eq!(
            State::of_legs([done(Skipped), done(Success)]),
            done(Success)
        );
        assert_eq!(
            State::of_legs([done(Cancelled), done(Success)]),
            done(Cancelled)
        );
    }
}
