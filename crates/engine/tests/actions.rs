//! `uses:` on the host: local JavaScript actions (pre/main/post, state, inputs),
//! nested composites, built-in cache and artifacts, `--action-dir` copies of
//! remote actions, local reusable workflows, and the offline error.

use std::path::Path;
use std::sync::Arc;

use hangar_engine::report::MemoryReporter;
use hangar_engine::{
    CancellationToken, Conclusion, Engine, RunContext, RunOptions, RunSummary, Workflow,
};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn run(root: &Path, data: &Path, engine: Engine, workflow: &str) -> (RunSummary, Vec<String>) {
    write(root, ".github/workflows/w.yml", workflow);
    let wf = Arc::new(Workflow::load(&root.join(".github/workflows/w.yml")).unwrap());
    let mut run = RunContext::new(root, "push", None);
    run.data_dir = data.to_path_buf();
    let reporter = Arc::new(MemoryReporter::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = rt
        .block_on(engine.run_workflows(
            Arc::new(run),
            vec![wf],
            RunOptions::default(),
            reporter.clone(),
            CancellationToken::new(),
        ))
        .unwrap();
    (s, reporter.lines())
}

fn has_node() -> bool {
    hangar_engine::shell::which("node", None).is_some()
}

#[test]
fn local_javascript_action_main_post_with_state_and_inputs() {
    if !has_node() {
        eprintln!("!!! skipping: node is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "js/action.yml",
        "name: js\ninputs:\n  who:\n    default: world\n  extra words: {}\noutputs:\n  greeting: {}\nruns:\n  using: node20\n  pre: pre.js\n  main: main.js\n  post: post.js\n",
    );
    write(root, "js/pre.js", "console.log('pre ran');\n");
    write(
        root,
        "js/main.js",
        "const fs = require('fs');\nconsole.log(`hello ${process.env.INPUT_WHO} ${process.env['INPUT_EXTRA_WORDS']}`);\nfs.appendFileSync(process.env.GITHUB_OUTPUT, 'greeting=hi\\n');\nfs.appendFileSync(process.env.GITHUB_STATE, 'saved=42\\n');\n",
    );
    write(
        root,
        "js/post.js",
        "console.log(`post ran with ${process.env.STATE_saved}`);\n",
    );
    let (s, lines) = run(
        root,
        &root.join(".data"),
        Engine::new(),
        "on: push\njobs:\n  a:\n    steps:\n      - id: g\n        uses: ./js\n        with: {extra words: again}\n      - run: echo \"out=${{ steps.g.outputs.greeting }}\"\n",
    );
    assert!(s.success, "{lines:?}");
    let pos = |l: &str| {
        lines
            .iter()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("{l:?} not in {lines:?}"))
    };
    // GitHub never runs `pre` of a local action (it warns instead).
    assert!(!lines.contains(&"pre ran".to_string()), "{lines:?}");
    assert!(pos("hello world again") < pos("out=hi"));
    assert!(pos("out=hi") < pos("post ran with 42"));
}

#[test]
fn nested_composites_with_inputs_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "outer/action.yml",
        "inputs:\n  n: {default: '1'}\noutputs:\n  r:\n    value: ${{ steps.in.outputs.r }}\nruns:\n  using: composite\n  steps:\n    - id: in\n      uses: ./inner\n      with: {v: 'x${{ inputs.n }}'}\n    - run: echo \"outer sees $(basename $GITHUB_ACTION_PATH)\"\n      shell: bash\n",
    );
    write(
        root,
        "inner/action.yml",
        "inputs:\n  v: {required: true}\noutputs:\n  r:\n    value: ${{ steps.s.outputs.r }}\nruns:\n  using: composite\n  steps:\n    - id: s\n      run: echo \"r=${{ inputs.v }}-inner\" >> $GITHUB_OUTPUT\n      shell: bash\n",
    );
    let (s, lines) = run(
        root,
        &root.join(".data"),
        Engine::new(),
        "on: push\njobs:\n  a:\n    steps:\n      - id: o\n        uses: ./outer\n        with: {n: 7}\n      - run: echo \"got ${{ steps.o.outputs.r }}\"\n",
    );
    assert!(s.success, "{lines:?}");
    assert!(lines.contains(&"got x7-inner".to_string()), "{lines:?}");
    assert!(lines.contains(&"outer sees outer".to_string()), "{lines:?}");
}

#[test]
fn cache_round_trip_and_artifacts_between_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    let wf = "on: push\njobs:\n  a:\n    steps:\n      - id: c\n        uses: actions/cache@v4\n        with: {path: deps, key: 'deps-${{ hashFiles(''lock'') }}', restore-keys: 'deps-'}\n      - run: echo \"hit=${{ steps.c.outputs.cache-hit }}\"; ls deps 2>/dev/null || true\n      - run: mkdir -p deps out && echo cached > deps/file && echo art > out/a.txt\n      - uses: actions/upload-artifact@v4\n        with: {name: result, path: out}\n  b:\n    needs: a\n    steps:\n      - uses: actions/download-artifact@v4\n        with: {name: result, path: got}\n      - run: cat got/a.txt\n";
    write(&root, "lock", "v1");
    let (s, lines) = run(&root, &data, Engine::new(), wf);
    assert!(s.success, "{lines:?}");
    assert!(lines.contains(&"hit=false".to_string()), "{lines:?}");
    assert!(lines.contains(&"art".to_string()), "{lines:?}");
    std::fs::remove_dir_all(root.join("deps")).unwrap();
    std::fs::remove_dir_all(root.join("got")).unwrap();
    let (s, lines) = run(&root, &data, Engine::new(), wf);
    assert!(s.success, "{lines:?}");
    assert!(lines.contains(&"hit=true".to_string()), "{lines:?}");
    assert!(
        lines.contains(&"file".to_string()),
        "the cache was not restored: {lines:?}"
    );
}

#[test]
fn action_dir_overrides_the_forge() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(&root).unwrap();
    let wf = "on: push\njobs:\n  a:\n    steps:\n      - uses: someone/tool/sub@v2\n        with: {x: '5'}\n";
    // A forge without that repository (never the network in a test).
    let empty_forge = dir.path().join("forge");
    std::fs::create_dir_all(&empty_forge).unwrap();
    let source = hangar_engine::actions::ActionSource::new(
        &format!("file://{}", empty_forge.display()),
        false,
    )
    .unwrap();
    let mut engine = Engine::new();
    engine.set_action_source(source.clone());
    let (s, _) = run(&root, &dir.path().join("d"), engine, wf);
    assert_eq!(s.jobs[0].result, Conclusion::Failure);
    let copy = dir.path().join("tool");
    write(
        &copy,
        "sub/action.yml",
        "inputs: {x: {}}\nruns:\n  using: composite\n  steps:\n    - run: echo \"tool ${{ inputs.x }}\"\n      shell: sh\n",
    );
    let mut engine = Engine::new();
    engine.set_action_source(source);
    engine
        .add_action_dir(&format!("someone/tool@v2={}", copy.display()))
        .unwrap();
    let (s, lines) = run(&root, &dir.path().join("d"), engine, wf);
    assert!(s.success, "{lines:?}");
    assert!(lines.contains(&"tool 5".to_string()), "{lines:?}");
}

#[test]
fn local_reusable_workflow_with_inputs_secrets_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        ".github/workflows/called.yml",
        "on:\n  workflow_call:\n    inputs:\n      n: {type: number, default: 1}\n    outputs:\n      doubled:\n        value: ${{ jobs.work.outputs.d }}\njobs:\n  work:\n    outputs:\n      d: ${{ steps.s.outputs.d }}\n    steps:\n      - id: s\n        run: echo \"d=$(( ${{ inputs.n }} * 2 ))\" >> $GITHUB_OUTPUT; echo \"secret is ${{ secrets.TOKEN }}\"\n",
    );
    let (s, lines) = run(
        root,
        &root.join(".data"),
        Engine::new(),
        "on: push\njobs:\n  call:\n    uses: ./.github/workflows/called.yml\n    with: {n: 21}\n    secrets: {TOKEN: abc}\n  after:\n    needs: call\n    steps:\n      - run: echo \"answer ${{ needs.call.outputs.doubled }}\"\n",
    );
    assert!(s.success, "{lines:?}");
    assert!(lines.contains(&"answer 42".to_string()), "{lines:?}");
    assert!(lines.contains(&"secret is ***".to_string()), "{lines:?}");
    assert!(
        s.jobs.iter().any(|j| j.key == "call / work"),
        "{:?}",
        s.jobs
    );
}

struct Hello;

impl hangar_engine::BuiltinAction for Hello {
    fn name(&self) -> &str {
        "hangar/hello"
    }

    fn run(&self, call: &hangar_engine::ActionCall) -> hangar_engine::ActionResult {
        call.output.line(&format!(
            "hello {} from {}",
            call.input("who"),
            call.version
        ));
        let mut r = hangar_engine::ActionResult::ok();
        r.outputs.insert("said".into(), "yes".into());
        r
    }
}

#[test]
fn registered_builtin_actions_run_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::new();
    engine.register(Arc::new(Hello));
    let (s, lines) = run(
        dir.path(),
        &dir.path().join(".data"),
        engine,
        "on: push\njobs:\n  a:\n    steps:\n      - id: h\n        uses: hangar/hello@v1\n        with: {who: team}\n      - run: echo \"said ${{ steps.h.outputs.said }}\"\n",
    );
    assert!(s.success, "{lines:?}");
    assert!(
        lines.contains(&"hello team from v1".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"said yes".to_string()), "{lines:?}");
}

#[test]
fn matrix_on_a_job_calling_a_reusable_workflow_calls_it_per_leg() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        ".github/workflows/called.yml",
        "on:\n  workflow_call:\n    inputs:\n      os: {type: string, required: true}\n    outputs:\n      seen:\n        value: ${{ jobs.build.outputs.seen }}\njobs:\n  build:\n    outputs:\n      seen: ${{ steps.s.outputs.seen }}\n    steps:\n      - id: s\n        run: echo \"leg ${{ inputs.os }}\" && echo \"seen=${{ inputs.os }}\" >> $GITHUB_OUTPUT\n",
    );
    let wf = "on: push\njobs:\n  call:\n    strategy:\n      matrix:\n        os: [linux, mac]\n    uses: ./.github/workflows/called.yml\n    with: {os: '${{ matrix.os }}'}\n  after:\n    needs: call\n    steps:\n      - run: echo \"last ${{ needs.call.outputs.seen }}\"\n";
    let (s, lines) = run(root, &root.join(".data"), Engine::new(), wf);
    assert!(s.success, "{lines:?}");
    for want in ["leg linux", "leg mac", "last mac"] {
        assert!(lines.contains(&want.to_string()), "{want}: {lines:?}");
    }
    let keys: Vec<&str> = s.jobs.iter().map(|j| j.key.as_str()).collect();
    assert!(keys.contains(&"call (linux) / build"), "{keys:?}");
    assert!(keys.contains(&"call (mac) / build"), "{keys:?}");
}
