// hangar web UI: a small hash-routed single page over the REST API and SSE.
// No build step: this file is embedded in the binary as is.
'use strict';

const $ = (sel, el = document) => el.querySelector(sel);
const h = (tag, attrs = {}, ...kids) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid.nodeType ? kid : String(kid));
  return el;
};

// The token comes from the form, or once from the URL (#...?token=...), then localStorage.
function takeTokenFromUrl() {
  const m = location.hash.match(/[?&]token=([^&]+)/);
  if (m) {
    localStorage.setItem('hangar.token', decodeURIComponent(m[1]));
    // replaceState: no hashchange, so the page routes once.
    history.replaceState(null, '', location.hash.replace(/[?&]token=[^&]+/, ''));
  }
}
takeTokenFromUrl();
const token = () => localStorage.getItem('hangar.token') || '';

$('#token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  localStorage.setItem('hangar.token', $('#token-input').value.trim());
  $('#token-input').value = '';
  me = null;
  route();
});

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { 'Authorization': 'Bearer ' + token(), 'Content-Type': 'application/json', ...(opts.headers || {}) } });
  if (r.status === 401) throw new Error('Paste an API token above (hangar serve printed the admin token at first start).');
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  const ct = r.headers.get('content-type') || '';
  return ct.includes('json') ? r.json() : r.text();
}

// replaceChildren() would print null as text; drop the absent parts first.
const put = (el, ...kids) => el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
const badge = (status, conclusion) => {
  const s = status === 'completed' ? (conclusion || 'completed') : status;
  return h('span', { class: 'badge s-' + s }, s);
};
const when = (ms) => ms ? new Date(ms).toLocaleString() : '';
const dur = (a, b) => {
  if (!a) return '';
  const s = ((b || Date.now()) - a) / 1000;
  return s < 60 ? s.toFixed(1) + 's' : Math.floor(s / 60) + 'm' + Math.round(s % 60) + 's';
};

// Who the token is: the UI offers only the buttons the API would accept from it.
let me = null;
async function whoami() {
  if (!me) me = await api('/api/v1/whoami');
  return me;
}
const isAdmin = async () => (await whoami()).role === 'admin';

// A destructive button asks once more in place (no modal dialog to dismiss).
function confirmButton(label, action, cls = 'danger') {
  const b = h('button', { class: cls, 'data-label': label });
  b.textContent = label;
  let armed = false;
  b.addEventListener('click', async () => {
    if (!armed) { armed = true; b.textContent = 'Really ' + label.toLowerCase() + '?'; b.classList.add('armed'); setTimeout(() => { armed = false; b.textContent = label; b.classList.remove('armed'); }, 5000); return; }
    b.disabled = true;
    try { await action(); } catch (e) { b.disabled = false; flash(e.message); }
  });
  return b;
}

// One line of feedback under the page title.
function flash(text, ok = false) {
  const el = $('#flash');
  if (el) { el.textContent = text; el.className = ok ? 's-success' : 's-failure'; }
}
const flashEl = () => h('p', { id: 'flash', role: 'status' });
const form = (onsubmit, ...kids) => h('form', { class: 'filters', onsubmit: async (e) => {
  e.preventDefault();
  try { await onsubmit(e.target); } catch (err) { flash(err.message); }
} }, ...kids);
const bytes = (n) => n < 1024 ? n + ' B' : n < 1 << 20 ? (n / 1024).toFixed(1) + ' KiB' : n < 1 << 30 ? (n / (1 << 20)).toFixed(1) + ' MiB' : (n / (1 << 30)).toFixed(2) + ' GiB';
const table = (cols, rows, id) => h('table', { id }, h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, c)))), h('tbody', {}, rows));

let cleanup = [];
function onLeave(f) { cleanup.push(f); }

async function route() {
  cleanup.forEach((f) => f());
  cleanup = [];
  // Each route renders into a box of its own: a slower page still loading
  // when the user moved on writes into a box no longer shown, never over
  // the page that replaced it.
  const main = h('div', { class: 'page' });
  put($('#main'), main);
  const hash = location.hash.replace(/^#/, '') || '/runs';
  try {
    let m;
    if ((m = hash.match(/^\/runs\/(\d+)/))) await runPage(main, +m[1]);
    else if ((m = hash.match(/^\/repos\/(\d+)\/workflows\/(.+)$/))) await workflowPage(main, +m[1], decodeURIComponent(m[2]));
    else if ((m = hash.match(/^\/repos\/(\d+)/))) await repoPage(main, +m[1]);
    else if (hash.startsWith('/repos')) await reposPage(main);
    else if (hash.startsWith('/tokens')) await tokensPage(main);
    else if (hash.startsWith('/notifications')) await notificationsPage(main);
    else if (hash.startsWith('/settings')) await settingsPage(main);
    else if (hash.startsWith('/delivery')) await deliveryPage(main);
    else if (hash.startsWith('/agents')) await agentsPage(main);
    else if (hash.startsWith('/approvals')) await approvalsPage(main);
    else await runsPage(main);
  } catch (e) {
    put(main, h('p', { class: 's-failure', id: 'error' }, e.message));
  }
}
window.addEventListener('hashchange', route);

// ---- Runs list ------------------------------------------------------------
async function runsPage(main) {
  const f = JSON.parse(sessionStorage.getItem('hangar.filters') || '{}');
  const field = (name, ph) => h('input', { name, placeholder: ph, value: f[name] || '' });
  const status = h('select', { name: 'status' }, ['', 'waiting', 'queued', 'running', 'completed'].map((s) => h('option', { value: s, selected: f.status === s }, s || 'any status')));
  const form = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); save(); } },
    status, field('event', 'event'), field('branch', 'branch'), field('workflow', 'workflow'), h('button', { type: 'submit' }, 'Filter'));
  const body = h('tbody');
  const dispatch = h('details', { class: 'dispatch' }, h('summary', {}, 'Run workflow'), h('div', { id: 'dispatch-body' }, 'Loading…'));
  dispatch.addEventListener('toggle', () => { if (dispatch.open) dispatchForm($('#dispatch-body', dispatch)); });
  put(main, h('h1', {}, 'Runs'), dispatch, form, h('table', { id: 'runs' }, h('thead', {}, h('tr', {}, ['#', 'repository', 'workflow', 'branch', 'commit', 'author', 'event', 'status', 'started', 'duration'].map((c) => h('th', {}, c)))), body));
  function save() {
    const v = Object.fromEntries(new FormData(form));
    sessionStorage.setItem('hangar.filters', JSON.stringify(v));
    load();
  }
  async function load() {
    const v = Object.fromEntries(new FormData(form));
    const q = new URLSearchParams(Object.entries(v).filter(([, x]) => x)).toString();
    const runs = await api('/api/v1/runs?' + q);
    put(body, ...runs.map((r) => h('tr', { 'data-run': r.id },
      h('td', {}, h('a', { href: '#/runs/' + r.id }, '#' + r.id)),
      h('td', {}, r.repo ? h('a', { href: '#/repos/' + r.repo_id }, r.repo) : ''),
      h('td', {}, h('a', { href: `#/repos/${r.repo_id}/workflows/${encodeURIComponent(r.workflow_path)}` }, r.workflow_name)),
      h('td', {}, r.git_ref.replace(/^refs\/(heads|tags)\//, '')),
      h('td', {}, h('code', {}, r.sha.slice(0, 8)), r.commit_message ? h('div', { class: 'msg' }, r.commit_message) : null),
      h('td', {}, r.author || r.actor), h('td', {}, r.event),
      h('td', { class: 'status' }, badge(r.status, r.conclusion), r.waiting_reason ? h('div', { class: 'muted' }, r.waiting_reason) : null),
      h('td', {}, when(r.created_at)), h('td', {}, dur(r.started_at, r.finished_at)))));
    if (!runs.length) body.append(h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'No runs yet. Push a commit or POST /api/v1/repos/{id}/dispatch.')));
  }
  await load();
  const t = setInterval(() => load().catch(() => {}), 3000);
  onLeave(() => clearInterval(t));
}

// workflow_dispatch with typed inputs: booleans are checkboxes, choices selects.
async function dispatchForm(box) {
  const repos = await api('/api/v1/repos');
  if (!repos.length) { put(box, h('p', { class: 'muted' }, 'No repositories registered.')); return; }
  const repoSel = h('select', {}, repos.map((r) => h('option', { value: r.id }, r.name)));
  const wfSel = h('select');
  const refIn = h('input', { placeholder: 'ref (default branch)' });
  const fields = h('div', { class: 'filters' });
  const msg = h('span', { class: 'muted' });
  let workflows = [];
  async function loadWorkflows() {
    const v = await api(`/api/v1/repos/${repoSel.value}/workflows`);
    workflows = v.workflows.filter((w) => w.dispatch_inputs);
    put(wfSel, ...workflows.map((w) => h('option', { value: w.path }, w.name + ' (' + w.path.split('/').pop() + ')')));
    renderInputs();
  }
  function renderInputs() {
    const wf = workflows.find((w) => w.path === wfSel.value);
    const inputs = wf ? Object.entries(wf.dispatch_inputs) : [];
    put(fields, ...inputs.map(([name, d]) => {
      const type = d.type || 'string';
      let el;
      if (type === 'boolean') el = h('input', { type: 'checkbox', name, checked: d.default === true || d.default === 'true' });
      else if (type === 'choice') el = h('select', { name }, (d.options || []).map((o) => h('option', { value: o, selected: o === d.default }, o)));
      else el = h('input', { name, type: type === 'number' ? 'number' : 'text', value: d.default ?? '', placeholder: name });
      el.dataset.type = type;
      return h('label', {}, name + (d.required ? '*' : '') + ' ', el);
    }));
    if (!workflows.length) put(fields, h('span', { class: 'muted' }, 'No workflow with a workflow_dispatch trigger.'));
  }
  repoSel.addEventListener('change', loadWorkflows);
  wfSel.addEventListener('change', renderInputs);
  const go = h('button', { class: 'primary', onclick: async () => {
    const inputs = {};
    for (const el of fields.querySelectorAll('[name]')) {
      if (el.dataset.type === 'boolean') inputs[el.name] = el.checked;
      else if (el.value !== '') inputs[el.name] = el.dataset.type === 'number' ? Number(el.value) : el.value;
    }
    try {
      const r = await api(`/api/v1/repos/${repoSel.value}/dispatch`, { method: 'POST', body: JSON.stringify({ workflow: wfSel.value, ref: refIn.value || undefined, inputs }) });
      location.hash = '#/runs/' + r.run;
    } catch (e) { msg.textContent = e.message; }
  } }, 'Run');
  put(box, h('div', { class: 'filters' }, repoSel, wfSel, refIn), fields, h('div', { class: 'filters' }, go, msg));
  await loadWorkflows();
}

// ---- Run page ---------------------------------------------------------------
async function runPage(main, id) {
  const state = { data: null, selected: null, logs: new Map() };
  const head = h('div', { class: 'runhead' });
  const graph = h('div', { class: 'graph', id: 'graph' });
  const panel = h('div', { class: 'jobpanel', id: 'jobpanel' });
  const arts = h('div', { class: 'artifacts', id: 'artifacts' });
  // A run refused at intake (an invalid workflow file): its errors, no jobs.
  const errs = h('div', { class: 'run-errors', id: 'run-errors', hidden: true });
  put(main, head, errs, graph, arts, panel);

  // EventSource sends no Authorization header: the stream's URL carries a
  // token minted for this run that lasts a minute; a reconnect mints another.
  let es = null;
  let left = false;
  onLeave(() => { left = true; if (es) es.close(); });
  async function openStream() {
    if (left) return;
    let t;
    try { t = await api(`/api/v1/runs/${id}/events/token`, { method: 'POST' }); } catch (e) { setTimeout(openStream, 5000); return; }
    if (left) return;
    es = new EventSource(`/api/v1/runs/${id}/events?access_token=${encodeURIComponent(t.token)}`);
    es.onmessage = onEvent;
    es.onerror = () => { es.close(); setTimeout(openStream, 2000); };
  }
  let reloadPending = false;
  const reload = () => {
    if (reloadPending) return;
    reloadPending = true;
    setTimeout(async () => { reloadPending = false; await load().catch(() => {}); }, 100);
  };
  const onEvent = (m) => {
    const ev = JSON.parse(m.data);
    if (ev.type === 'log') {
      const log = state.logs.get(ev.job_id);
      if (log) log.addChunk(ev.first_line, ev.text, ev.step ?? null);
    } else {
      // `hello` too: what happened before the stream opened is read again.
      reload();
    }
  };

  // `#/runs/R/jobs/J#step-N:L`: job J, its step N open at line L.
  const linked = location.hash.match(/^#\/runs\/\d+\/jobs\/(\d+)(?:#step-(\d+|none):(\d+))?/);
  if (linked) {
    state.selected = +linked[1];
    if (linked[2] !== undefined) state.anchor = { step: linked[2], line: +linked[3] };
  }

  async function load() {
    state.data = await api('/api/v1/runs/' + id);
    const { run, jobs } = state.data;
    if (state.selected !== null && !jobs.some((j) => j.id === state.selected)) state.selected = null;
    if (state.selected === null && jobs.length) {
      state.selected = (jobs.find((j) => j.status === 'running') || jobs[0]).id;
    }
    renderHead(run);
    renderErrors(state.data);
    renderGraph(jobs);
    put(arts, ...(state.data.artifacts || []).map((a) => h('a', { class: 'artifact', href: '#', onclick: (e) => { e.preventDefault(); download(`/api/v1/runs/${id}/artifacts/${encodeURIComponent(a.name)}`, a.name); } }, `⬇ ${a.name} (${a.size} B)`)));
    renderJob(jobs.find((j) => j.id === state.selected));
  }

  function renderHead(run) {
    const act = (label, path, body, cls) => h('button', { class: cls, onclick: async () => {
      try { await api(path, { method: 'POST', body: JSON.stringify(body || {}) }); await load(); } catch (e) { alert(e.message); }
    } }, label);
    put(head, 
      h('h1', {}, `${run.workflow_name} #${run.run_number || run.id}`),
      h('span', { id: 'run-status', 'data-status': run.status, 'data-conclusion': run.conclusion || '' }, badge(run.status, run.conclusion)),
      h('span', { class: 'muted' }, `${run.event} · ${run.git_ref} · ${run.sha.slice(0, 10)} · `, h('span', { id: 'run-attempt' }, `attempt ${run.attempt}`)),
      h('span', { class: 'muted' }, dur(run.started_at, run.finished_at)),
      state.data.held ? act('Approve and run', `/api/v1/runs/${run.id}/approve`, null, 'primary') : null,
      run.status !== 'completed' ? act('Cancel', `/api/v1/runs/${run.id}/cancel`, null, 'danger') : null,
      run.status === 'completed' && !state.data.refused ? act('Re-run all jobs', `/api/v1/runs/${run.id}/rerun`, { jobs: 'all' }) : null,
      run.status === 'completed' && !state.data.refused && run.conclusion !== 'success' ? act('Re-run failed jobs', `/api/v1/runs/${run.id}/rerun`, { jobs: 'failed' }) : null,
    );
  }

  // Each error at its file:line:col, as text: a workflow file is anyone's.
  function renderErrors({ refused, errors }) {
    errors = errors || [];
    errs.hidden = !refused && !errors.length;
    const where = (e) => [e.file, e.line, e.column].filter((x) => x !== null && x !== undefined).join(':');
    put(errs,
      refused ? h('h2', { class: 'run-errors-title' }, refused.title) : null,
      h('ul', {}, errors.map((e) => h('li', { class: 'run-error' },
        e.file ? h('code', { class: 'where' }, where(e)) : null, e.file ? ' ' : null,
        h('span', { class: 'message' }, e.message)))),
      refused ? h('p', { class: 'muted' }, refused.rerun) : null);
  }

  // Columns by depth in the `needs` graph; lines from each job to its needs.
  // `graph_needs` is `needs` with a called workflow's jobs standing for
  // their caller, which is not shown (as on GitHub).
  const drawnNeeds = (j) => j.graph_needs || j.needs;
  function renderGraph(jobs) {
    const byKey = new Map();
    jobs.forEach((j) => { if (!byKey.has(j.key)) byKey.set(j.key, []); byKey.get(j.key).push(j); });
    const depth = new Map();
    const d = (key, seen = new Set()) => {
      if (depth.has(key)) return depth.get(key);
      if (seen.has(key)) return 0;
      seen.add(key);
      const js = byKey.get(key) || [];
      const v = js.length ? Math.max(0, ...drawnNeeds(js[0]).map((n) => d(n, seen) + 1)) : 0;
      depth.set(key, v);
      return v;
    };
    const cols = [];
    jobs.forEach((j) => { const c = d(j.key); (cols[c] = cols[c] || []).push(j); });
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    put(graph, svg, ...cols.map((col) => h('div', { class: 'col' }, (col || []).map((j) =>
      h('div', { class: 'jobbox' + (j.id === state.selected ? ' sel' : ''), 'data-job': j.id, 'data-key': j.key,
        onclick: () => { state.selected = j.id; renderGraph(state.data.jobs); renderJob(j); } },
        badge(j.status, j.conclusion), ' ', h('b', {}, j.name),
        h('div', { class: 'muted' }, dur(j.started_at, j.finished_at)),
        j.waiting_reason && j.status !== 'running' ? h('div', { class: 'why' }, j.waiting_reason) : null)))));
    requestAnimationFrame(() => {
      const base = graph.getBoundingClientRect();
      svg.setAttribute('width', graph.scrollWidth);
      svg.setAttribute('height', graph.scrollHeight);
      for (const j of jobs) {
        const to = graph.querySelector(`[data-job="${j.id}"]`);
        for (const n of drawnNeeds(j)) {
          for (const from of graph.querySelectorAll(`[data-key="${CSS.escape(n)}"]`)) {
            const a = from.getBoundingClientRect(), b = to.getBoundingClientRect();
            const x1 = a.right - base.left, y1 = a.top + a.height / 2 - base.top;
            const x2 = b.left - base.left, y2 = b.top + b.height / 2 - base.top;
            const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
            p.setAttribute('d', `M${x1},${y1} C${x1 + 30},${y1} ${x2 - 30},${y2} ${x2},${y2}`);
            p.setAttribute('stroke', '#58a6ff'); p.setAttribute('fill', 'none');
            p.dataset.from = n; p.dataset.to = j.key;
            svg.append(p);
          }
        }
      }
    });
  }

  function renderJob(job) {
    if (!job) { put(panel, state.data.refused ? null : h('p', { class: 'muted' }, 'This run has no jobs.')); return; }
    // A log whose lines know their step is shown by step, as GitHub shows
    // it; a finished job's log written before lines knew their step (or by
    // an agent that sends none) is shown as one log, as it always was.
    const stepped = !(job.status === 'completed' && (job.log_steps || []).length && (job.log_steps || []).every((s) => s.step === null));
    let log = state.logs.get(job.id);
    if (log && (log instanceof StepsView) !== stepped) log = null;
    if (!log) {
      log = stepped ? new StepsView(job, id) : new LogView(job.id);
      state.logs.set(job.id, log);
      if (!stepped) log.load();
    }
    if (stepped) log.update(job, state.anchor);
    state.anchor = null;
    const approvals = (job.approvals || []).filter((a) => a.state === 'pending').map((a) => h('div', { class: 'approval' },
      `Deployment of ${job.name} to ${a.environment} needs a reviewer (${state.data.run.git_ref.replace(/^refs\/heads\//, '')} at ${state.data.run.sha.slice(0, 8)}).`,
      h('button', { class: 'primary', onclick: () => decide(a.id, true) }, 'Approve'),
      h('button', { class: 'danger', onclick: () => decide(a.id, false) }, 'Reject')));
    put(panel, 
      h('h2', {}, job.name, ' ', badge(job.status, job.conclusion)),
      job.waiting_reason ? h('p', { class: 'muted', id: 'waiting-reason' }, job.waiting_reason) : null,
      ...approvals,
      stepped ? null : h('ul', { class: 'steps' }, (job.steps || []).map((s) => h('li', {}, badge(s.status, s.conclusion), s.name, h('span', { class: 't' }, dur(s.started_at, s.finished_at))))),
      (job.attempt_history || []).length ? h('div', { class: 'attempts', id: 'attempt-history' }, h('b', {}, 'Earlier attempts'),
        h('ul', {}, job.attempt_history.map((a) => h('li', { 'data-attempt': a.attempt }, `Attempt ${a.attempt}: `, badge('completed', a.conclusion),
          a.failed_step ? ` at step “${a.failed_step}”` : '', ' ', h('span', { class: 'muted' }, dur(a.started_at, a.finished_at)), ' ',
          h('a', { href: '#', onclick: (e) => { e.preventDefault(); download(`/api/v1/jobs/${job.id}/logs/raw?attempt=${a.attempt}`, `job-${job.id}-attempt-${a.attempt}.log`); } }, 'log'))))) : null,
      log.annotationsEl,
      h('div', { class: 'toolbar' },
        h('a', { href: '#', onclick: (e) => { e.preventDefault(); download(`/api/v1/jobs/${job.id}/logs/raw`, `job-${job.id}.log`); } }, 'Raw log'),
        // Earlier attempts of this job (retries after a lost agent, re-runs) keep their logs.
        ...(job.attempts || []).filter((n) => n !== job.attempt).map((n) =>
          h('a', { class: 'attempt', href: '#', onclick: (e) => { e.preventDefault(); download(`/api/v1/jobs/${job.id}/logs/raw?attempt=${n}`, `job-${job.id}-attempt-${n}.log`); } }, `Attempt ${n} log`)),
        h('button', { onclick: () => log.foldAll(false) }, 'Expand groups'),
        h('button', { onclick: () => log.foldAll(true) }, 'Collapse groups'),
        log.countEl),
      log.el);
    log.render();
  }

  async function decide(approvalId, approve) {
    const comment = approve ? '' : (prompt('Reason for rejecting?') || '');
    try { await api('/api/v1/approvals/' + approvalId, { method: 'POST', body: JSON.stringify({ approve, comment }) }); await load(); } catch (e) { alert(e.message); }
  }

  await load();
  openStream();
}

// Downloads with the token in the Authorization header (never in a URL, where
// proxies, history and Referer would keep it).
async function download(path, name) {
  try {
    const r = await fetch(path, { headers: { 'Authorization': 'Bearer ' + token() } });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
    const url = URL.createObjectURL(await r.blob());
    const a = h('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) { alert(e.message); }
}

// A virtualised log: only the rows in view are in the DOM, so 100,000 lines open
// at once. `::group::`/`::endgroup::` fold; `::error`/`::warning` are annotations.
const ROW = 18;
class LogView {
  // `section`: one step's lines in a StepsView ({ step, href }), numbered
  // within the step, each line linkable as `#step-N:L`.
  constructor(jobId, section = null) {
    this.jobId = jobId;
    this.section = section;
    this.lines = [];
    // Step mode: the number in the job's whole log of the last line held,
    // to take from a live chunk only the lines not read yet.
    this.lastGlobal = -1;
    this.globals = [];
    this.loaded = false;
    this.mark = -1;
    this.collapsed = new Set();
    this.visible = [];
    this.el = section ? h('div', { class: 'log steplog', 'data-step': section.step }) : h('div', { class: 'log', id: 'log' });
    this.spacer = h('div', { class: 'spacer' });
    this.el.append(this.spacer);
    this.el.addEventListener('scroll', () => this.paint());
    this.annotationsEl = h('div', { class: 'annotations', id: 'annotations' });
    this.countEl = h('span', { class: 'muted', id: 'log-count' });
    this.follow = true;
    this.pending = false;
  }
  async load() {
    if (this.section) return this.loadStep();
    const text = await api(`/api/v1/jobs/${this.jobId}/logs/raw`);
    const lines = text ? text.replace(/\n$/, '').split('\n') : [];
    // Live chunks may have arrived meanwhile; the stored text is authoritative up to its length.
    if (lines.length >= this.lines.length) this.lines = lines;
    this.reindex();
  }
  // A step's lines, page by page; live chunks that arrive meanwhile are
  // matched by their numbers in the job's log, so none is shown twice.
  async loadStep() {
    // Live chunks that come while the pages are read wait here (a section
    // read again keeps taking them live meanwhile).
    this.early = this.loaded ? null : [];
    this.reading = true;
    const lines = [];
    const globals = [];
    for (let from = 0; ; from += 10000) {
      const page = await api(`/api/v1/jobs/${this.jobId}/logs?step=${this.section.step}&from=${from}&to=${from + 10000}`);
      for (const [, text, global] of page.lines) { lines.push(text); globals.push(global); }
      if (page.lines.length === 0 || from + 10000 >= page.total) break;
    }
    // What was read, then the live lines that came after it.
    const last = globals.length ? globals[globals.length - 1] : -1;
    this.globals.forEach((g, k) => { if (g > last) { lines.push(this.lines[k]); globals.push(g); } });
    this.lines = lines;
    this.globals = globals;
    this.lastGlobal = Math.max(last, this.lastGlobal);
    this.loaded = true;
    this.reading = false;
    for (const [first, text] of this.early || []) this.addChunk(first, text);
    this.early = null;
    this.reindex();
  }
  addChunk(firstLine, text) {
    if (this.section) {
      if (!this.loaded) { if (this.early) this.early.push([firstLine, text]); return; }
      const lines = text.replace(/\n$/, '').split('\n');
      lines.forEach((l, k) => { if (firstLine + k > this.lastGlobal) { this.lines.push(l); this.globals.push(firstLine + k); this.lastGlobal = firstLine + k; } });
      this.reindex();
      return;
    }
    if (firstLine > this.lines.length) { this.load(); return; }
    const lines = text.replace(/\n$/, '').split('\n');
    const skip = this.lines.length - firstLine;
    if (skip >= lines.length) return;
    for (const l of lines.slice(skip)) this.lines.push(l);
    this.reindex();
  }
  foldAll(collapse) {
    this.collapsed.clear();
    if (collapse) this.lines.forEach((l, i) => { if (l.startsWith('::group::')) this.collapsed.add(i); });
    this.reindex();
  }
  reindex() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.build(); });
  }
  build() {
    const vis = [];
    const ann = [];
    let hiding = false;
    for (let i = 0; i < this.lines.length; i++) {
      const l = this.lines[i];
      if (l.startsWith('::endgroup::')) { hiding = false; continue; }
      if (!hiding) vis.push(i);
      if (l.startsWith('::group::') && this.collapsed.has(i)) hiding = true;
      const a = l.match(/^::(error|warning|notice)([^:]*)::(.*)$/) || l.match(/^##\[(error|warning)\](.*)$/);
      if (a && ann.length < 50) ann.push([a[1], a[3] !== undefined ? a[3] : a[2], i]);
    }
    this.visible = vis;
    this.spacer.style.height = vis.length * ROW + 'px';
    // A step's box is as tall as its lines, up to the page's log height.
    if (this.section) this.el.style.height = Math.min(vis.length * ROW + 6, Math.round(window.innerHeight * 0.6)) + 'px';
    this.countEl.textContent = `${this.lines.length} lines`;
    put(this.annotationsEl, ...ann.map(([kind, msg, i]) => h('div', { class: kind, onclick: () => this.scrollToLine(i) }, `${kind}: ${msg}`)));
    const atBottom = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - 2 * ROW;
    if (this.follow && atBottom) this.el.scrollTop = this.el.scrollHeight;
    this.paint();
  }
  scrollToLine(i) {
    const idx = this.visible.indexOf(i);
    if (idx >= 0) this.el.scrollTop = Math.max(0, idx * ROW - 3 * ROW);
  }
  render() { this.build(); }
  paint() {
    const top = this.el.scrollTop;
    const h0 = this.el.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - 20);
    const last = Math.min(this.visible.length, Math.ceil((top + h0) / ROW) + 20);
    const rows = [];
    for (let k = first; k < last; k++) {
      const i = this.visible[k];
      const l = this.lines[i];
      let cls = 'row', text = l;
      if (l.startsWith('::group::')) { cls += ' group'; text = (this.collapsed.has(i) ? '▸ ' : '▾ ') + l.slice(9); }
      else if (/^(::error|##\[error\])/.test(l)) cls += ' err';
      else if (/^(::warning|##\[warning\])/.test(l)) cls += ' warn';
      let row;
      if (this.section) {
        const anchor = `step-${this.section.step}:${i + 1}`;
        const n = h('a', { class: 'n', href: this.section.href + '#' + anchor }, i + 1);
        // Linkable without leaving the page: the address changes, no reload.
        n.addEventListener('click', (e) => { e.preventDefault(); history.replaceState(null, '', n.getAttribute('href')); this.mark = i; this.paint(); });
        row = h('div', { class: cls + (i === this.mark ? ' hl' : ''), style: `top:${k * ROW}px`, id: anchor, 'data-line': i + 1 }, n, text);
      } else {
        row = h('div', { class: cls, style: `top:${k * ROW}px`, 'data-line': i + 1 }, h('span', { class: 'n' }, i + 1), text);
      }
      if (cls.includes('group')) row.addEventListener('click', () => {
        if (this.collapsed.has(i)) this.collapsed.delete(i); else this.collapsed.add(i);
        this.build();
      });
      rows.push(row);
    }
    put(this.spacer, ...rows);
  }
}

// A job's log by step, as GitHub shows it: one collapsible section per step
// (its name, conclusion and duration), the lines of no step first as "Set
// up job"; a failed or running step opens by itself; each section reads its
// own lines (`?step=N`) when first opened, and live lines go to their step.
// The `step` of a job's "Complete job" lines (the agent protocol's COMPLETE_JOB_STEP).
const COMPLETE = '-1';
class StepsView {
  constructor(job, runId) {
    this.jobId = job.id;
    this.href = `#/runs/${runId}/jobs/${job.id}`;
    this.sections = new Map();
    this.el = h('div', { class: 'steps-log', id: 'log' });
    this.annotationsEl = h('div', { class: 'annotations', id: 'annotations' });
    this.countEl = h('span', { class: 'muted', id: 'log-count' });
  }
  section(step, name) {
    const key = step === null ? 'none' : String(step);
    let sec = this.sections.get(key);
    if (sec) return sec;
    const view = new LogView(this.jobId, { step: key, href: this.href });
    const head = h('summary', {});
    const box = h('details', { class: 'step', id: 'step-' + key, 'data-step': key }, head, view.annotationsEl, view.el);
    sec = { key, view, box, head, opened: false, autoOpened: false };
    box.addEventListener('toggle', () => {
      if (box.open && !sec.opened) { sec.opened = true; view.load().catch(() => {}); }
      if (box.open) view.reindex();
    });
    this.sections.set(key, sec);
    return sec;
  }
  open(sec) { if (!sec.box.open) sec.box.open = true; }
  update(job, anchor) {
    const counts = new Map((job.log_steps || []).map((s) => [s.step === null ? 'none' : String(s.step), s.lines]));
    const order = [];
    if (counts.has('none')) {
      // The job's own lines: its set-up (actions resolved, the workspace,
      // notices), and what the agent or server said of the job as a whole.
      const sec = this.section(null);
      put(sec.head, h('span', { class: 'badge s-success' }, '·'), ' Set up job', h('span', { class: 'lines muted' }, ` ${counts.get('none')} lines`));
      // A job that failed with no failed step failed here: show why.
      const why = job.conclusion === 'failure' && !(job.steps || []).some((st) => st.conclusion === 'failure');
      if (why && !sec.autoOpened) { sec.autoOpened = true; this.open(sec); }
      order.push(sec);
    }
    for (const st of (job.steps || []).slice().sort((a, b) => a.idx - b.idx).filter((st) => st.idx >= 0)) {
      const sec = this.section(st.idx);
      put(sec.head, badge(st.status, st.conclusion), ' ', h('span', { class: 'name' }, st.name),
        h('span', { class: 't' }, dur(st.started_at, st.finished_at)));
      sec.box.dataset.conclusion = st.conclusion || '';
      sec.box.dataset.status = st.status;
      // The failing step is open, and a running one (its lines arrive live);
      // once: a section the user closed stays closed.
      const wants = st.status === 'running' || st.conclusion === 'failure';
      if (wants && !sec.autoOpened) { sec.autoOpened = true; this.open(sec); }
      order.push(sec);
    }
    // Lines of a step the job's step list does not name (yet).
    for (const [key] of counts) if (key !== 'none' && key !== COMPLETE && !order.some((s) => s.key === key)) {
      const sec = this.section(+key);
      put(sec.head, h('span', { class: 'badge s-running' }, '…'), ` step ${+key + 1}`);
      order.push(sec);
    }
    if (counts.has(COMPLETE)) {
      // What the job said once its steps were done (its timeout, its orphans
      // ended): last, as GitHub's "Complete job".
      const sec = this.section(+COMPLETE);
      put(sec.head, h('span', { class: 'badge s-success' }, '·'), ' ', h('span', { class: 'name' }, 'Complete job'), h('span', { class: 'lines muted' }, ` ${counts.get(COMPLETE)} lines`));
      order.push(sec);
    }
    put(this.el, ...order.map((s) => s.box));
    // A section that holds fewer lines than its step wrote missed live
    // chunks (the stream dropped them, or it was behind): read it again.
    for (const sec of order) {
      const v = sec.view;
      if (v.loaded && !v.reading && v.lines.length < (counts.get(sec.key) || 0)) v.load().catch(() => {});
    }
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    this.countEl.textContent = `${total} lines`;
    if (anchor) {
      const sec = this.sections.get(anchor.step);
      if (sec) {
        sec.view.mark = anchor.line - 1;
        this.open(sec);
        const go = () => { sec.box.scrollIntoView(); sec.view.scrollToLine(anchor.line - 1); sec.view.paint(); };
        // Opening loads the lines; jump once they are in.
        const wait = () => (sec.view.loaded ? requestAnimationFrame(() => requestAnimationFrame(go)) : setTimeout(wait, 50));
        wait();
      }
    }
  }
  addChunk(firstLine, text, step) {
    const sec = this.sections.get(step === null ? 'none' : String(step));
    if (sec) sec.view.addChunk(firstLine, text);
  }
  foldAll(collapse) { for (const s of this.sections.values()) s.view.foldAll(collapse); }
  render() { for (const s of this.sections.values()) if (s.box.open) s.view.reindex(); }
}


// ---- Agents and approvals --------------------------------------------------
async function agentsPage(main) {
  const admin = await isAdmin();
  const agents = await api('/api/v1/agents');
  const act = (a, path, method = 'POST') => async () => { await api(`/api/v1/agents/${encodeURIComponent(a.id)}${path}`, { method }); route(); };
  put(main, h('h1', {}, 'Agents'), flashEl(), table(['name', 'labels', 'capacity', 'free', 'connected', 'state', 'last seen', ''],
    agents.map((a) => h('tr', { 'data-agent': a.id },
      h('td', {}, a.name + (a.embedded ? ' (embedded)' : '')), h('td', {}, a.labels.join(', ')), h('td', {}, a.capacity),
      h('td', {}, a.free_slots ?? ''), h('td', {}, a.connected ? h('span', { class: 's-success' }, 'yes') : h('span', { class: 's-failure' }, 'no')),
      h('td', { class: 'state' }, a.drained ? h('span', { class: 's-waiting' }, 'drained') : 'in service'),
      h('td', {}, when(a.last_seen)),
      h('td', {}, admin ? [
        a.drained ? h('button', { class: 'resume', onclick: act(a, '/resume') }, 'Resume') : h('button', { class: 'drain', onclick: act(a, '/drain') }, 'Drain'), ' ',
        confirmButton('Remove', act(a, '', 'DELETE'))] : null))), 'agents'),
    h('p', { class: 'muted' }, 'A drained agent finishes its jobs and takes no new one. A removed agent is out for good: its jobs go back to the queue, its process stops, and a single-use token that registered it is revoked.'));
}

async function approvalsPage(main) {
  const list = await api('/api/v1/approvals?pending=false');
  // The job, branch and commit each approval is for, from its run.
  const runs = new Map();
  for (const id of [...new Set(list.filter((a) => a.state === 'pending').map((a) => a.run_id))]) {
    try { runs.set(id, await api('/api/v1/runs/' + id)); } catch (e) { /* gone meanwhile */ }
  }
  const what = (a) => {
    const d = runs.get(a.run_id);
    if (!d) return '';
    const job = d.jobs.find((j) => j.id === a.job_id);
    return [h('b', {}, job ? job.name : 'job ' + a.job_id), ' · ', d.run.git_ref.replace(/^refs\/heads\//, ''), ' · ', h('code', {}, d.run.sha.slice(0, 8))];
  };
  const row = (a) => h('tr', { 'data-approval': a.id },
    h('td', {}, h('a', { href: '#/runs/' + a.run_id }, '#' + a.run_id)), h('td', { class: 'what' }, what(a)), h('td', {}, a.environment), h('td', { class: 'state' }, a.state),
    h('td', {}, a.reviewer || ''), h('td', {}, a.comment || ''),
    h('td', {}, a.state === 'pending' ? [
      h('button', { class: 'primary', onclick: () => decide(a.id, true) }, 'Approve'), ' ',
      h('button', { class: 'danger', onclick: () => decide(a.id, false) }, 'Reject')] : when(a.decided_at)));
  async function decide(id, approve) {
    const comment = approve ? '' : (prompt('Reason for rejecting?') || '');
    try { await api('/api/v1/approvals/' + id, { method: 'POST', body: JSON.stringify({ approve, comment }) }); route(); } catch (e) { flash(e.message); }
  }
  put(main, h('h1', {}, 'Approvals'), flashEl(), table(['run', 'job · branch · commit', 'environment', 'state', 'reviewer', 'comment', ''], list.map(row), 'approvals'));
}

// ---- Repositories -----------------------------------------------------------
async function reposPage(main) {
  const admin = await isAdmin();
  const repos = await api('/api/v1/repos');
  const register = form(async (f) => {
    const v = Object.fromEntries(new FormData(f));
    const body = { name: v.name, clone_url: v.clone_url, forge: v.forge };
    if (v.webhook_secret) body.webhook_secret = v.webhook_secret;
    await api('/api/v1/repos', { method: 'POST', body: JSON.stringify(body) });
    route();
  }, h('input', { name: 'name', placeholder: 'owner/name', required: true }), h('input', { name: 'clone_url', placeholder: 'clone URL', required: true, size: 40 }),
  h('select', { name: 'forge' }, ['github', 'gitea', 'forgejo', 'gitlab', 'local'].map((f) => h('option', { value: f }, f))),
  h('input', { name: 'webhook_secret', type: 'password', placeholder: 'webhook secret (16+ characters)', autocomplete: 'new-password' }),
  h('button', { type: 'submit', class: 'primary' }, 'Register'));
  put(main, h('h1', {}, 'Repositories'), flashEl(), admin ? register : null,
    table(['name', 'clone URL', 'forge', 'webhooks', 'badges', 'registered', ''], repos.map((r) => h('tr', { 'data-repo': r.name },
      h('td', {}, h('a', { href: '#/repos/' + r.id }, r.name)), h('td', {}, h('code', {}, r.clone_url)), h('td', {}, r.forge),
      h('td', {}, r.has_webhook_secret ? 'accepted (signed)' : 'none'), h('td', {}, r.public ? 'public' : 'private'),
      h('td', {}, when(r.created_at)),
      h('td', {}, admin ? confirmButton('Delete', async () => { await api('/api/v1/repos/' + r.id, { method: 'DELETE' }); route(); }) : null))), 'repos'));
}

async function repoPage(main, id) {
  const admin = await isAdmin();
  const repo = await api('/api/v1/repos/' + id);
  const edit = form(async (f) => {
    const v = Object.fromEntries(new FormData(f));
    const body = { clone_url: v.clone_url, forge: v.forge, public: f.querySelector('[name=public]').checked };
    if (v.webhook_secret) body.webhook_secret = v.webhook_secret;
    if (f.querySelector('[name=no_webhooks]').checked) body.webhook_secret = null;
    await api('/api/v1/repos/' + id, { method: 'PATCH', body: JSON.stringify(body) });
    flash('Saved.', true);
  }, h('label', {}, 'clone URL ', h('input', { name: 'clone_url', value: repo.clone_url, size: 40 })),
  h('label', {}, 'forge ', h('select', { name: 'forge' }, ['github', 'gitea', 'forgejo', 'gitlab', 'local'].map((f) => h('option', { value: f, selected: f === repo.forge }, f)))),
  h('label', {}, h('input', { type: 'checkbox', name: 'public', checked: repo.public }), ' public badges'),
  h('input', { name: 'webhook_secret', type: 'password', placeholder: repo.has_webhook_secret ? 'new webhook secret (kept if empty)' : 'webhook secret', autocomplete: 'new-password' }),
  h('label', {}, h('input', { type: 'checkbox', name: 'no_webhooks' }), ' accept no webhooks'),
  h('button', { type: 'submit', class: 'primary' }, 'Save'));
  const envIn = h('input', { placeholder: 'environment', id: 'env-name' });
  const envBox = h('div');
  const showEnv = async () => {
    const env = envIn.value.trim();
    if (!env) { put(envBox); return; }
    put(envBox, await valuesBox(`/api/v1/repos/${id}/environments/${encodeURIComponent(env)}`, 'secrets', admin),
      await valuesBox(`/api/v1/repos/${id}/environments/${encodeURIComponent(env)}`, 'variables', admin));
  };
  let workflows = [];
  try { workflows = (await api(`/api/v1/repos/${id}/workflows`)).workflows; } catch (e) { /* no HEAD yet */ }
  put(main, h('h1', {}, repo.name), flashEl(),
    admin ? edit : h('p', { class: 'muted' }, `${repo.clone_url} · ${repo.forge}`),
    h('h2', {}, 'Workflows'),
    table(['workflow', 'file', 'badge'], workflows.map((w) => {
      const file = w.path.split('/').pop();
      const src = `/badge/${repo.name}/${file}.svg`;
      return h('tr', {}, h('td', {}, h('a', { href: `#/repos/${id}/workflows/${encodeURIComponent(w.path)}` }, w.name || file)), h('td', {}, h('code', {}, w.path)),
        h('td', {}, repo.public ? [h('img', { src, alt: 'status' }), ' ', h('code', {}, `![${w.name || file}](${location.origin}${src}?branch=main)`)] : h('span', { class: 'muted' }, 'private (badges need a public repository)')));
    })),
    h('h2', {}, 'Repository secrets and variables'),
    await valuesBox(`/api/v1/repos/${id}`, 'secrets', admin),
    await valuesBox(`/api/v1/repos/${id}`, 'variables', admin),
    h('h2', {}, 'Environment secrets and variables'),
    h('div', { class: 'filters' }, envIn, h('button', { onclick: showEnv }, 'Show')), envBox);
}

// Secrets or variables at one level: names, a write-only value field, remove.
// No value ever comes back from the API, so none can be shown.
async function valuesBox(base, kind, admin) {
  const box = h('div', { class: 'values', 'data-kind': kind, 'data-base': base });
  const render = async () => {
    const names = (await api(`${base}/${kind}`)).names;
    const set = form(async (f) => {
      const v = Object.fromEntries(new FormData(f));
      await api(`${base}/${kind}/${encodeURIComponent(v.name)}`, { method: 'PUT', body: JSON.stringify({ value: v.value }) });
      f.reset();
      await render();
      flash(`${kind === 'secrets' ? 'Secret' : 'Variable'} ${v.name} saved.`, true);
    }, h('input', { name: 'name', placeholder: 'NAME', required: true }),
    h('input', { name: 'value', type: 'password', placeholder: 'value (write-only)', autocomplete: 'new-password' }),
    h('button', { type: 'submit' }, kind === 'secrets' ? 'Set secret' : 'Set variable'));
    put(box, h('h3', {}, kind),
      h('ul', { class: 'names' }, names.map((n) => h('li', { 'data-name': n }, h('code', {}, n), ' ', admin ? confirmButton('Remove', async () => {
        await api(`${base}/${kind}/${encodeURIComponent(n)}`, { method: 'DELETE' }); await render();
      }) : null))),
      names.length ? null : h('p', { class: 'muted' }, 'none'),
      admin ? set : null);
  };
  await render();
  return box;
}

// A workflow's history: its runs, newest first, and its badge.
async function workflowPage(main, repoId, path) {
  const repo = await api('/api/v1/repos/' + repoId);
  const file = path.split('/').pop();
  const runs = await api(`/api/v1/runs?repo=${repoId}&workflow=${encodeURIComponent(path)}&limit=100`);
  const ok = runs.filter((r) => r.conclusion === 'success').length;
  const done = runs.filter((r) => r.status === 'completed').length;
  put(main, h('h1', {}, `${repo.name} · ${runs[0]?.workflow_name || file}`),
    repo.public ? h('img', { src: `/badge/${repo.name}/${file}.svg`, alt: 'status' }) : null,
    h('p', { class: 'muted' }, `${runs.length} runs shown; ${ok} of ${done} finished runs succeeded.`),
    table(['#', 'branch', 'commit', 'author', 'event', 'status', 'attempt', 'started', 'duration'], runs.map((r) => h('tr', {},
      h('td', {}, h('a', { href: '#/runs/' + r.id }, '#' + (r.run_number || r.id))), h('td', {}, r.git_ref.replace(/^refs\/(heads|tags)\//, '')),
      h('td', {}, h('code', {}, r.sha.slice(0, 8)), r.commit_message ? h('div', { class: 'msg' }, r.commit_message) : null),
      h('td', {}, r.author || r.actor), h('td', {}, r.event), h('td', {}, badge(r.status, r.conclusion)), h('td', {}, r.attempt),
      h('td', {}, when(r.created_at)), h('td', {}, dur(r.started_at, r.finished_at)))), 'history'));
}

// ---- Tokens -----------------------------------------------------------------
async function tokensPage(main) {
  const tokens = await api('/api/v1/tokens');
  const shown = h('div', { id: 'new-token' });
  const singleUse = h('input', { type: 'checkbox', name: 'single_use', disabled: true });
  const create = form(async (f) => {
    const v = Object.fromEntries(new FormData(f));
    const body = { name: v.name, role: v.role };
    if (v.days) body.expires_in = Math.round(Number(v.days) * 86400);
    // Agent tokens only (the checkbox is disabled for other roles): the
    // token registers one agent and is revoked when that agent is removed.
    if (v.role === 'agent' && v.single_use) body.reusable = false;
    const t = await api('/api/v1/tokens', { method: 'POST', body: JSON.stringify(body) });
    await render();
    // Shown once: the server keeps only its hash.
    put(shown, h('div', { class: 'once' }, `Token ${t.name} (${t.role}): `, h('code', { id: 'new-token-value' }, t.token),
      h('div', { class: 'muted' }, 'Copy it now: it is not shown again.')));
  }, h('input', { name: 'name', placeholder: 'name', required: true }),
  h('select', { name: 'role', onchange: (e) => { singleUse.disabled = e.target.value !== 'agent'; if (singleUse.disabled) singleUse.checked = false; } },
    ['read', 'write', 'admin', 'agent'].map((r) => h('option', { value: r }, r))),
  h('input', { name: 'days', type: 'number', min: '1', step: 'any', placeholder: 'expires in days (never if empty)' }),
  h('label', { title: 'An agent token that registers one agent, and is revoked when that agent is removed' }, singleUse, ' single-use (agent)'),
  h('button', { type: 'submit', class: 'primary' }, 'Create token'));
  const body = h('tbody');
  async function render() {
    const list = await api('/api/v1/tokens');
    put(body, list.map((t) => h('tr', { 'data-token': t.name, 'data-id': t.id },
      h('td', {}, t.name), h('td', {}, t.role), h('td', {}, when(t.created_at)),
      h('td', {}, t.expires_at ? when(t.expires_at) : 'never'),
      h('td', { class: 'use' }, t.role !== 'agent' ? '' : t.reusable ? 'reusable' : t.used_at ? 'single-use, used ' + when(t.used_at) : 'single-use, unused'),
      h('td', { class: 'state' }, t.revoked_at ? 'revoked ' + when(t.revoked_at) : (t.expires_at && t.expires_at < Date.now() ? 'expired' : 'active')),
      h('td', {}, t.revoked_at ? null : confirmButton('Revoke', async () => { await api('/api/v1/tokens/' + t.id, { method: 'DELETE' }); await render(); flash(`Token ${t.name} revoked.`, true); })))));
  }
  void tokens;
  put(main, h('h1', {}, 'Tokens'), flashEl(), create, shown,
    h('table', { id: 'tokens' }, h('thead', {}, h('tr', {}, ['name', 'role', 'created', 'expires', 'registers', 'state', ''].map((c) => h('th', {}, c)))), body));
  await render();
}

// ---- Notifications ----------------------------------------------------------
const EVENTS = ['run_failed', 'run_fixed', 'approval_waiting', 'deployment_started', 'deployment_succeeded', 'deployment_failed', 'agent_lost'];
async function notificationsPage(main) {
  const admin = await isAdmin();
  const [rules, repos, sent] = [await api('/api/v1/notifications'), await api('/api/v1/repos'), await api('/api/v1/outbound?kind=notification&limit=50')];
  const name = (id) => id == null ? 'every repository' : (repos.find((r) => r.id === id)?.name || '#' + id);
  const add = form(async (f) => {
    const v = Object.fromEntries(new FormData(f));
    const events = [...f.querySelectorAll('[name=event]:checked')].map((c) => c.value);
    const body = { events, channel: v.channel, url: v.url };
    if (v.repo) body.repo_id = Number(v.repo);
    if (v.secret) body.secret = v.secret;
    await api('/api/v1/notifications', { method: 'POST', body: JSON.stringify(body) });
    route();
  }, h('select', { name: 'repo' }, h('option', { value: '' }, 'every repository'), repos.map((r) => h('option', { value: r.id }, r.name))),
  h('select', { name: 'channel' }, ['slack', 'teams', 'webhook', 'email'].map((c) => h('option', { value: c }, c))),
  h('input', { name: 'url', placeholder: 'webhook URL or smtp://… (write-only)', required: true, size: 36 }),
  h('input', { name: 'secret', type: 'password', placeholder: 'HMAC secret (webhook)', autocomplete: 'new-password' }),
  ...EVENTS.map((e) => h('label', {}, h('input', { type: 'checkbox', name: 'event', value: e }), ' ' + e)),
  h('button', { type: 'submit', class: 'primary' }, 'Add rule'));
  put(main, h('h1', {}, 'Notification rules'), flashEl(), admin ? add : null,
    table(['repository', 'events', 'channel', 'to', 'signed', 'added', ''], rules.map((r) => h('tr', { 'data-rule': r.id },
      h('td', {}, name(r.repo_id)), h('td', {}, r.events.join(', ')), h('td', {}, r.channel), h('td', {}, r.host),
      h('td', {}, r.signed ? 'yes' : ''), h('td', {}, when(r.created_at)),
      h('td', {}, admin ? confirmButton('Delete', async () => { await api('/api/v1/notifications/' + r.id, { method: 'DELETE' }); route(); }) : null))), 'rules'),
    // What the rules sent and how each delivery went: a channel that stopped
    // answering shows here, not only in the server's log.
    h('h2', {}, 'Deliveries'),
    table(['at', 'event', 'run', 'to', 'rule', 'outcome', 'attempts'], sent.map((o) => h('tr', { 'data-outbound': o.id, class: o.outcome === 'delivered' ? '' : 'failed' },
      h('td', {}, when(o.at)), h('td', {}, o.state), h('td', {}, o.run_id ? h('a', { href: '#/runs/' + o.run_id }, '#' + o.run_id) : ''), h('td', {}, o.target), h('td', {}, o.subject),
      h('td', { class: 'outcome' }, o.outcome + (o.error ? ': ' + o.error : '')), h('td', {}, o.attempts))), 'deliveries'),
    h('p', {}, h('a', { href: '#/settings' }, 'Everything sent (commit statuses too) is under Settings.')));
}

// ---- Delivery: environments, versions, weights, traffic, history -----------
async function deliveryPage(main) {
  const admin = await isAdmin();
  const box = h('div', { id: 'delivery' });
  put(main, h('h1', {}, 'Delivery'), flashEl(), box);
  const ms = (t) => t ? new Date(t).toISOString().replace('T', ' ').replace('Z', ' UTC') : '';
  const pct = (x) => (100 * x).toFixed(2) + '%';
  async function act(e, body, label) {
    flash(`${label}…`, true);
    const r = await api(`/api/v1/delivery/${encodeURIComponent(e.project_id || e.project)}/${encodeURIComponent(e.env)}`, { method: 'POST', body: JSON.stringify(body) });
    // A protected environment answers 202 with an operation that waits for
    // its reviewers (and wait timer) before the controller acts.
    if (r && typeof r === 'object' && r.id !== undefined && !Array.isArray(r)) {
      const op = await api('/api/v1/delivery/operations/' + r.id);
      flash(`${label}: operation ${r.id} ` + (op.approval && op.approval.state === 'pending' ? `waits for a reviewer (${(op.approval.reviewers || []).join(', ')})` : 'accepted'), true);
    } else {
      flash(`${label}: ${typeof r === 'string' ? r : 'done'}`, true);
    }
    await load();
  }
  function service(e, s) {
    const traffic = new Map(s.traffic || []);
    return h('div', { class: 'service', 'data-service': s.service },
      h('h3', {}, s.service, ' ', h('span', { class: 'muted' }, `listening on ${s.listen}`), s.rollout ? h('span', { class: 'badge s-running rollout' }, s.rollout) : null),
      table(['version', 'weight', 'requests', 'errors', 'error rate', 'p50', 'p95', 'p99'], s.weights.map(([v, w]) => {
        const t = traffic.get(v) || {};
        return h('tr', { 'data-version': v, 'data-weight': w },
          h('td', {}, h('code', {}, v), v === s.stable ? h('span', { class: 'muted' }, ' (stable)') : null),
          h('td', { class: 'weight' }, w + '%'), h('td', {}, t.requests ?? 0), h('td', {}, t.errors ?? 0),
          h('td', { class: (t.error_rate || 0) > 0 ? 's-failure' : '' }, pct(t.error_rate || 0)),
          h('td', {}, (t.p50_ms ?? 0).toFixed(1) + ' ms'), h('td', {}, (t.p95_ms ?? 0).toFixed(1) + ' ms'), h('td', {}, (t.p99_ms ?? 0).toFixed(1) + ' ms'));
      }), null),
      table(['instance', 'version', 'port', 'pid', 'phase', 'restarts', 'last health check'], s.instances.map((i) => h('tr', {},
        h('td', {}, `${i.service}#${i.index}`), h('td', {}, h('code', {}, i.version)), h('td', {}, i.port), h('td', {}, i.pid),
        h('td', { class: i.phase === 'healthy' ? 's-success' : i.phase === 'starting' ? 's-waiting' : 's-failure' }, i.phase),
        h('td', {}, i.restarts), h('td', {}, i.last_health || i.last_exit || ''))), null));
  }
  // Backups (`recovery:` in hangar.yml): the newest, how many are kept,
  // the schedule, and its alerts while they fire.
  function backups(b) {
    const age = b.newest_ms ? Math.round((Date.now() - b.newest_ms) / 1000) + ' s ago' : 'none yet';
    return h('div', { class: 'backups' },
      h('h3', {}, 'Backups'),
      h('p', {}, `newest: ${age} · ${b.count} kept of ${b.keep}`,
        b.every_ms ? ` · every ${b.every_ms / 1000} s` : ' · not scheduled',
        b.rpo_ms ? ` · RPO ${b.rpo_ms / 1000} s` : ''),
      b.failing_since_ms ? h('p', { class: 's-failure backup-failing' }, `scheduled backup failing since ${ms(b.failing_since_ms)}: ${b.last_error || ''}`) : null,
      b.rpo_breached_since_ms ? h('p', { class: 's-failure backup-rpo' }, `RPO breached since ${ms(b.rpo_breached_since_ms)}`) : null);
  }
  function environment(e) {
    const rolling = e.status && e.status.services.some((s) => s.rollout);
    const buttons = admin && e.running ? [
      rolling ? h('button', { class: 'primary promote', onclick: () => act(e, { op: 'promote' }, 'Promote').catch((x) => flash(x.message)) }, 'Promote') : null,
      rolling ? h('button', { class: 'danger abort', onclick: () => act(e, { op: 'abort' }, 'Abort').catch((x) => flash(x.message)) }, 'Abort') : null,
      rolling ? null : confirmButton('Rollback', () => act(e, { op: 'rollback', service: null, to: null }, 'Rollback')),
    ] : [];
    return h('section', { class: 'env', 'data-env': e.env, 'data-project': e.project, 'data-project-id': e.project_id },
      h('h2', {}, `${e.project} · ${e.env} `, e.running ? h('span', { class: 'badge s-success' }, 'controller running') : h('span', { class: 'badge s-skipped' }, 'controller stopped'), ' ', ...buttons),
      e.status ? e.status.services.map((s) => service(e, s)) : h('p', { class: 'muted' }, 'Stable: ' + Object.entries(e.stable || {}).map(([k, v]) => `${k} ${v}`).join(', ')),
      e.backups ? backups(e.backups) : null,
      h('h3', {}, 'History'),
      e.history.length ? e.history.map((d) => h('details', { class: 'deployment', 'data-outcome': d.outcome },
        h('summary', {}, `#${d.id} ${d.service} ${d.previous || '∅'} → ${d.version} · ${d.strategy} · `, h('b', { class: d.outcome === 'succeeded' ? 's-success' : 's-failure' }, d.outcome),
          ` · ${ms(d.started_ms || d.started * 1000)} · ${d.finished_ms && d.started_ms ? (d.finished_ms - d.started_ms) + ' ms' : (d.finished - d.started) + ' s'}`),
        h('ol', {}, d.events.map((ev, k) => h('li', {}, d.event_times && d.event_times[k] ? h('span', { class: 'muted' }, ms(d.event_times[k]) + ' ') : null, ev))))) : h('p', { class: 'muted' }, 'No deployment yet.'));
  }
  let busy = false;
  async function load() {
    if (busy) return;
    busy = true;
    try {
      const envs = await api('/api/v1/delivery');
      // Keep open history entries open across refreshes.
      const open = new Set([...box.querySelectorAll('details[open] summary')].map((x) => x.textContent));
      put(box, envs.length ? envs.map(environment) : h('p', { class: 'muted' }, 'No environment yet. Start hangar serve with --repo DIR and deploy (hangar deploy ENV --server URL).'));
      box.querySelectorAll('details summary').forEach((x) => { if (open.has(x.textContent)) x.parentElement.open = true; });
    } finally { busy = false; }
  }
  await load();
  // Live traffic and weights: read again every second while the page is open.
  const t = setInterval(() => load().catch(() => {}), 1000);
  onLeave(() => clearInterval(t));
}

// ---- Settings: retention, disk usage, server-wide secrets, outbound log -----
// The server-wide GitHub App: registered once, used by every GitHub
// repository that installed it and has no credential of its own. Its key and
// webhook secret are write-only.
async function githubAppBox() {
  let cur = null;
  try { cur = await api('/api/v1/github-app'); } catch (e) { cur = null; }
  const save = form(async (f) => {
    const v = Object.fromEntries(new FormData(f));
    const body = { app_id: v.app_id };
    if (v.private_key) body.private_key = v.private_key;
    if (v.webhook_secret) body.webhook_secret = v.webhook_secret;
    if (v.api_url) body.api_url = v.api_url;
    try { await api('/api/v1/github-app', { method: 'PUT', body: JSON.stringify(body) }); flash('GitHub App saved.', true); route(); } catch (e) { flash(e.message); }
  }, h('input', { name: 'app_id', placeholder: 'App ID', required: true, value: cur ? cur.app_id : '' }),
  h('input', { name: 'api_url', placeholder: 'API root (https://api.github.com)', size: 30, value: cur ? cur.api_url : '' }),
  h('textarea', { name: 'private_key', rows: 3, cols: 40, placeholder: cur ? 'private key (stored; paste a new .pem to replace it)' : 'private key (.pem)', autocomplete: 'off' }),
  h('input', { name: 'webhook_secret', type: 'password', placeholder: cur && cur.has_webhook_secret ? 'webhook secret (stored)' : 'webhook secret (16+ characters)', autocomplete: 'new-password' }),
  h('button', { type: 'submit', class: 'primary' }, cur ? 'Update' : 'Register'));
  return h('div', { id: 'github-app' }, h('h2', {}, 'GitHub App (every repository that installs it)'),
    cur ? h('p', {}, `App ${cur.app_id} at ${cur.api_url}; webhook: `, h('code', {}, cur.webhook_url),
      cur.has_webhook_secret ? ' (signed)' : ' (no secret: its installation events are refused)', ' ',
      confirmButton('Remove', async () => { await api('/api/v1/github-app', { method: 'DELETE' }); route(); })) :
      h('p', { class: 'muted' }, 'No App registered: repositories report to GitHub only with a credential of their own.'),
    cur && cur.installations.length ? table(['repository', 'installation'], cur.installations.map((i) => h('tr', {}, h('td', {}, i.repository), h('td', {}, i.installation_id))), 'github-app-installations') : null,
    save);
}

async function settingsPage(main) {
  const admin = await isAdmin();
  const usage = await api('/api/v1/usage');
  const rt = usage.retention || {};
  const outbound = await api('/api/v1/outbound?limit=20');
  put(main, h('h1', {}, 'Settings'), flashEl(),
    h('h2', {}, 'Retention'),
    h('p', { id: 'retention' }, `Logs, artifacts and caches are kept ` + (rt.max_age_days ? `${rt.max_age_days} days` : 'with no age limit') + (rt.max_bytes ? `, within ${bytes(rt.max_bytes)} in all (oldest deleted first)` : ', with no size budget') + '. Set with hangar serve --retention-days and --retention-max-mb.'),
    h('h2', {}, 'Disk usage'),
    table(['repository', 'logs', 'artifacts', 'caches', 'total'], [
      ...usage.repos.map((u) => h('tr', {}, h('td', {}, u.repo || '(none)'), h('td', {}, bytes(u.logs_bytes)), h('td', {}, bytes(u.artifacts_bytes)), h('td', {}, bytes(u.caches_bytes)), h('td', {}, bytes(u.total_bytes)))),
      h('tr', {}, h('th', {}, 'all'), h('td'), h('td'), h('td'), h('th', {}, bytes(usage.total_bytes)))], 'usage'),
    admin ? await githubAppBox() : null,
    h('h2', {}, 'Server-wide secrets and variables (every repository)'),
    await valuesBox('/api/v1/repos/0', 'secrets', admin),
    await valuesBox('/api/v1/repos/0', 'variables', admin),
    h('h2', {}, 'Sent (commit statuses, notifications)'),
    table(['at', 'kind', 'to', 'subject', 'outcome', 'attempts'], outbound.map((o) => h('tr', {},
      h('td', {}, when(o.at)), h('td', {}, o.kind), h('td', {}, o.target), h('td', {}, o.subject), h('td', {}, o.outcome + (o.error ? ': ' + o.error : '')), h('td', {}, o.attempts)))));
}

route();
