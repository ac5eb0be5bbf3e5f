//! Local runs and the server agree by construction, checked on material
//! nobody here wrote: every push case of nektos/act's runner corpus that
//! needs neither Docker, the network nor act's own defaults (read from
//! `../shared/conformance/`, never copied) runs twice, once with `hangar run
//! --json` and once pushed to a real `hangar serve` whose jobs a real `hangar
//! agent` process runs. Per workflow, both sides must show the same jobs and
//! matrix legs with the same conclusions, the same `needs` graph, and the
//! same run conclusion; a workflow file that cannot run fails on both (on
//! the server as GitHub's "Invalid workflow file": one failed run, no jobs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::browser::{Kill, serve};
use crate::common::http_json;

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

/// Flags of act's table that make a case depend on something else than the
/// workflow: act's defaults (ACTISM), the host (ROOT, PWSH, WINDOWS), the
/// network, an event payload file, a reusable workflow of act's tree, or
/// act skipping `actions/checkout`.
const OTHER_NEEDS: &[&str] = &[
    "ACTISM", "ROOT", "EVT", "RWF", "PWSH", "NET", "WINDOWS", "CK",
];

/// One case: its name and the workflow files it holds (a folder of act's
/// testdata, non-recursive, or one file).
struct Case {
    name: String,
    workflows: Vec<PathBuf>,
}

fn cases(testdata: &Path, table: &Value) -> Vec<Case> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for c in table["cases"].as_array().unwrap() {
        let flags: Vec<&str> = c["flags"]
            .as_array()
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let path = c["workflow_path"].as_str().unwrap_or_default();
        if c["cls"] != "a"
            || c["event"] != "push"
            || c["workdir"] != "pkg/runner/testdata"
            || flags.iter().any(|f| OTHER_NEEDS.contains(f))
            // Its secrets and environment come from act's test harness.
            || path == "secrets"
            || !seen.insert(path.to_string())
        {
            continue;
        }
        let at = testdata.join(path);
        let mut workflows: Vec<PathBuf> = if at.is_dir() {
            std::fs::read_dir(&at)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
                .collect()
        } else {
            vec![at]
        };
        workflows.sort();
        if !workflows.is_empty() {
            out.push(Case {
                name: path.to_string(),
                workflows,
            });
        }
    }
    out
}

/// A repository like act's workdir for the case: its testdata tree (what
/// steps may read) with the case's workflow files in `.github/workflows`.
fn case_repo(root: &Path, testdata: &Path, case: &Case, n: usize) -> PathBuf {
    let dir = root.join(format!("case-{n}"));
    hangar_testkit::copy_dir(testdata, &dir);
    let wf = dir.join(".github/workflows");
    std::fs::create_dir_all(&wf).unwrap();
    for w in &case.workflows {
        std::fs::copy(w, wf.join(w.file_name().unwrap())).unwrap();
    }
    hangar_testkit::git(&dir, &["init", "-q", "-b", "main"]);
    hangar_testkit::commit(&dir, &[]);
    dir
}

/// Per job id, the conclusions of its legs (one for a job without a
/// matrix), sorted: what both sides must show alike for one workflow.
type Conclusions = BTreeMap<String, Vec<String>>;

/// `hangar run --json push` in `dir`: per workflow file stem, the
/// conclusions of its jobs; whether the run passed; its output. `only` is
/// the stem when the case has one workflow (its jobs' keys carry no
/// `STEM/` then).
fn local(dir: &Path, only: Option<&str>) -> (BTreeMap<String, Conclusions>, bool, String) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["run", "--json", "push"])
        .env_remove("HANGAR_SERVER")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut by_workflow: BTreeMap<String, Conclusions> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if e["event"] == "job_finished" {
            // `STEM/JOB` or `STEM/JOB (leg values)`: a job id has no space.
            let key = e["job"].as_str().unwrap_or_default();
            let (stem, job) = key
                .split_once('/')
                .unwrap_or((only.unwrap_or_default(), key));
            let id = job.split(' ').next().unwrap_or(job);
            by_workflow
                .entry(stem.to_string())
                .or_default()
                .entry(id.to_string())
                .or_default()
                .push(e["result"].as_str().unwrap().into());
        }
    }
    for jobs in by_workflow.values_mut() {
        jobs.values_mut().for_each(|v| v.sort());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (by_workflow, out.status.success(), text)
}

/// The `needs` of every job of a workflow file, as the one model reads it
/// (`None` when the file is not a workflow hangar can read).
fn declared_needs(file: &Path) -> Option<BTreeMap<String, Vec<String>>> {
    let text = std::fs::read_to_string(file).unwrap();
    let wf = hangar_workflow::model::Workflow::parse(&text).ok()?;
    Some(
        wf.jobs
            .iter()
            .map(|job| {
                let mut n: Vec<String> = job.needs.iter().map(|s| s.value.clone()).collect();
                n.sort();
                (job.id.name.clone(), n)
            })
            .collect(),
    )
}

/// The server's completed runs of repository `repo_id`, by workflow file
/// stem, once there are `expected` of them (or the time is up).
fn server_runs(base: &str, token: &str, repo_id: i64, expected: usize) -> BTreeMap<String, Value> {
    let start = Instant::now();
    loop {
        let (_, runs) = http_json(
            "GET",
            &format!("{base}/api/v1/runs?repo={repo_id}"),
            token,
            "",
        );
        let runs = runs.as_array().cloned().unwrap_or_default();
        let done = runs.iter().filter(|r| r["status"] == "completed").count();
        // A commit's runs are made together, in one look at it; none
        // expected: a few looks (`--poll-ms 200`) are enough to be sure.
        let settled = if expected == 0 {
            start.elapsed() > Duration::from_secs(2)
        } else {
            done >= expected && done == runs.len()
        };
        if settled || start.elapsed() > Duration::from_secs(120) {
            let mut out = BTreeMap::new();
            for r in runs {
                let (_, full) =
                    http_json("GET", &format!("{base}/api/v1/runs/{}", r["id"]), token, "");
                let path = r["workflow_path"].as_str().unwrap_or_default();
                let stem = Path::new(path)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.insert(stem, full);
            }
            return out;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn local_runs_and_the_server_agree_over_acts_corpus() {
    let Some(shared) = hangar_testkit::shared("conformance/act-cases.json") else {
        return;
    };
    let testdata = shared.join("conformance/act-testdata/pkg/runner/testdata");
    let table: Value =
        serde_json::from_slice(&std::fs::read(shared.join("conformance/act-cases.json")).unwrap())
            .unwrap();
    let cases = cases(&testdata, &table);
    assert!(cases.len() >= 25, "only {} cases selected", cases.len());
    let tmp = tempfile::tempdir().unwrap();
    let repos: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(n, c)| case_repo(tmp.path(), &testdata, c, n))
        .collect();

    // The server: every case repository watched, jobs run by an agent process.
    let data = tmp.path().join("data");
    let mut args = vec![
        "--agent-capacity".to_string(),
        "0".into(),
        "--sandbox".into(),
        "none".into(),
        "--poll-ms".into(),
        "200".into(),
    ];
    for r in &repos {
        args.push("--repo".into());
        args.push(r.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_serve, url, admin) = serve(BIN, &data, &args);
    let base = url
        .trim_end_matches('/')
        .trim_end_matches("/ui")
        .to_string();
    let (code, t) = http_json(
        "POST",
        &format!("{base}/api/v1/tokens"),
        &admin,
        r#"{"name": "runner", "role": "agent"}"#,
    );
    assert_eq!(code, 201, "{t}");
    let work = tmp.path().join("agent");
    let _agent = Kill(
        Command::new(BIN)
            .args(["agent", "--server", &base, "--token"])
            .arg(t["token"].as_str().unwrap())
            .args(["--sandbox", "none", "--capacity", "4", "--name", "corpus"])
            .args(["--labels", "ubuntu-latest,self-hosted", "--work-dir"])
            .arg(&work)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (_, listed) = http_json("GET", &format!("{base}/api/v1/repos"), &admin, "");
    let repo_id = |dir: &Path| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["clone_url"].as_str() == Some(&dir.display().to_string()))
            .and_then(|r| r["id"].as_i64())
            .unwrap_or_else(|| panic!("{} is not registered: {listed:#}", dir.display()))
    };
    // A push of each: the server builds what is pushed after it watches.
    crate::common::wait_until_watched(&base, &admin, repos.len());
    for r in &repos {
        hangar_testkit::commit(r, &[("pushed.txt", "pushed\n")]);
    }

    let mut disagree = Vec::new();
    // Cases with runs first: by the time those are done, the server has
    // looked at every pushed commit, so "no run" is an answer for the rest.
    // Four local runs at a time, as the agent takes four jobs.
    let mut order: Vec<(usize, BTreeMap<String, Conclusions>, bool, String)> = Vec::new();
    let numbered: Vec<(usize, (&Case, &PathBuf))> = cases.iter().zip(&repos).enumerate().collect();
    for chunk in numbered.chunks(4) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(n, (case, dir))| {
                    s.spawn(move || {
                        let only = (case.workflows.len() == 1).then(|| {
                            case.workflows[0]
                                .file_stem()
                                .unwrap()
                                .to_string_lossy()
                                .into_owned()
                        });
                        let (mine, ok, text) = local(dir, only.as_deref());
                        (n, mine, ok, text)
                    })
                })
                .collect();
            order.extend(handles.into_iter().map(|h| h.join().unwrap()));
        });
    }
    order.sort_by_key(|(_, mine, _, _)| mine.is_empty());
    for (n, mine, local_ok, text) in order {
        let (case, dir) = (&cases[n], &repos[n]);
        let theirs = server_runs(&base, &admin, repo_id(dir), mine.len());
        let server_ok = theirs.values().all(|r| r["run"]["conclusion"] == "success");
        // A file hangar refuses is, on the server, GitHub's "Invalid
        // workflow file": a failed run named after it, no job, its errors.
        let refused = |r: &Value| {
            r["jobs"].as_array().is_some_and(Vec::is_empty)
                && r["run"]["conclusion"] == "failure"
                && r["run"]["workflow_name"] == r["run"]["workflow_path"]
                && r["errors"][0]["line"].is_u64()
        };
        if mine.is_empty() {
            // Nothing ran here (no workflow on `push`, or none hangar can
            // read): nothing runs there either, but a refused file's failed
            // run, which hangar run's failure must match.
            let ran: Vec<&String> = theirs
                .iter()
                .filter(|(_, r)| !refused(r))
                .map(|(k, _)| k)
                .collect();
            if !ran.is_empty() {
                disagree.push(format!(
                    "{}: nothing ran under hangar run, the server ran {ran:?}: {text}",
                    case.name
                ));
            }
            if theirs.is_empty() != local_ok {
                disagree.push(format!(
                    "{}: hangar run {}, the server's refused runs: {:?}: {text}",
                    case.name,
                    if local_ok { "passed" } else { "failed" },
                    theirs.keys().collect::<Vec<_>>()
                ));
            }
        } else if local_ok != server_ok {
            disagree.push(format!(
                "{}: hangar run {} but the server's runs {}: {text}",
                case.name,
                if local_ok { "passed" } else { "failed" },
                if server_ok { "passed" } else { "did not pass" },
            ));
        }
        for w in &case.workflows {
            let stem = w.file_stem().unwrap().to_string_lossy().into_owned();
            let local_jobs = mine.get(&stem).cloned().unwrap_or_default();
            let Some(run) = theirs.get(&stem) else {
                if !local_jobs.is_empty() {
                    disagree.push(format!(
                        "{}/{stem}: ran locally, no run on the server",
                        case.name
                    ));
                }
                continue;
            };
            let mut server_jobs: Conclusions = BTreeMap::new();
            let mut server_needs = BTreeMap::new();
            for j in run["jobs"].as_array().unwrap() {
                let key = j["key"].as_str().unwrap().to_string();
                server_jobs
                    .entry(key.clone())
                    .or_default()
                    .push(j["conclusion"].as_str().unwrap_or("none").to_string());
                let mut n: Vec<String> = j["needs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect();
                n.sort();
                server_needs.insert(key, n);
            }
            server_jobs.values_mut().for_each(|v| v.sort());
            if server_jobs != local_jobs {
                disagree.push(format!(
                    "{}/{stem}: hangar run {local_jobs:?}, server {server_jobs:?}",
                    case.name
                ));
            }
            let declared = declared_needs(w);
            if !server_jobs.is_empty() && declared.as_ref() != Some(&server_needs) {
                disagree.push(format!(
                    "{}/{stem}: server needs {server_needs:?}, the file says {declared:?}",
                    case.name
                ));
            }
        }
        eprintln!(
            "{}: {} workflows, local {}",
            case.name,
            case.workflows.len(),
            if local_ok { "pass" } else { "fail" }
        );
    }
    assert!(
        disagree.is_empty(),
        "{} disagreements:\n{}",
        disagree.len(),
        disagree.join("\n")
    );
}
