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

let cleanup = [];
function onLeave(f) { cleanup.push(f); }

async function route() {
  cleanup.forEach((f) => f());
  cleanup = [];
  const main = $('#main');
  const hash = location.hash.replace(/^#/, '') || '/runs';
  try {
    let m;
    if ((m = hash.match(/^\/runs\/(\d+)/))) await runPage(main, +m[1]);
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
  put(main, h('h1', {}, 'Runs'), dispatch, form, h('table', {}, h('thead', {}, h('tr', {}, ['#', 'workflow', 'event', 'ref', 'commit', 'status', 'started', 'duration'].map((c) => h('th', {}, c)))), body));
  function save() {
    const v = Object.fromEntries(new FormData(form));
    sessionStorage.setItem('hangar.filters', JSON.stringify(v));
    load();
  }
  async function load() {
    const v = Object.fromEntries(new FormData(form));
    const q = new URLSearchParams(Object.entries(v).filter(([, x]) => x)).toString();
    const runs = await api('/api/v1/runs?' + q);
    put(body, ...runs.map((r) => h('tr', {},
      h('td', {}, h('a', { href: '#/runs/' + r.id }, '#' + r.id)),
      h('td', {}, r.workflow_name), h('td', {}, r.event),
      h('td', {}, r.git_ref.replace(/^refs\/(heads|tags)\//, '')), h('td', {}, h('code', {}, r.sha.slice(0, 8))),
      h('td', {}, badge(r.status, r.conclusion), r.waiting_reason ? h('div', { class: 'muted' }, r.waiting_reason) : null),
      h('td', {}, when(r.created_at)), h('td', {}, dur(r.started_at, r.finished_at)))));
    if (!runs.length) body.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No runs yet. Push a commit or POST /api/v1/repos/{id}/dispatch.')));
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
  put(main, head, graph, arts, panel);

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
      if (log) log.addChunk(ev.first_line, ev.text);
    } else {
      // `hello` too: what happened before the stream opened is read again.
      reload();
    }
  };

  async function load() {
    state.data = await api('/api/v1/runs/' + id);
    const { run, jobs } = state.data;
    if (state.selected === null && jobs.length) {
      state.selected = (jobs.find((j) => j.status === 'running') || jobs[0]).id;
    }
    renderHead(run);
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
      h('span', { class: 'muted' }, `${run.event} · ${run.git_ref} · ${run.sha.slice(0, 10)} · attempt ${run.attempt}`),
      h('span', { class: 'muted' }, dur(run.started_at, run.finished_at)),
      state.data.held ? act('Approve and run', `/api/v1/runs/${run.id}/approve`, null, 'primary') : null,
      run.status !== 'completed' ? act('Cancel', `/api/v1/runs/${run.id}/cancel`, null, 'danger') : null,
      run.status === 'completed' ? act('Re-run all jobs', `/api/v1/runs/${run.id}/rerun`, { jobs: 'all' }) : null,
      run.status === 'completed' && run.conclusion !== 'success' ? act('Re-run failed jobs', `/api/v1/runs/${run.id}/rerun`, { jobs: 'failed' }) : null,
    );
  }

  // Columns by depth in the `needs` graph; lines from each job to its needs.
  function renderGraph(jobs) {
    const byKey = new Map();
    jobs.forEach((j) => { if (!byKey.has(j.key)) byKey.set(j.key, []); byKey.get(j.key).push(j); });
    const depth = new Map();
    const d = (key, seen = new Set()) => {
      if (depth.has(key)) return depth.get(key);
      if (seen.has(key)) return 0;
      seen.add(key);
      const js = byKey.get(key) || [];
      const v = js.length ? Math.max(0, ...js[0].needs.map((n) => d(n, seen) + 1)) : 0;
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
        for (const n of j.needs) {
          for (const from of graph.querySelectorAll(`[data-key="${CSS.escape(n)}"]`)) {
            const a = from.getBoundingClientRect(), b = to.getBoundingClientRect();
            const x1 = a.right - base.left, y1 = a.top + a.height / 2 - base.top;
            const x2 = b.left - base.left, y2 = b.top + b.height / 2 - base.top;
            const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
            p.setAttribute('d', `M${x1},${y1} C${x1 + 30},${y1} ${x2 - 30},${y2} ${x2},${y2}`);
            p.setAttribute('stroke', '#58a6ff'); p.setAttribute('fill', 'none');
            svg.append(p);
          }
        }
      }
    });
  }

  function renderJob(job) {
    if (!job) { put(panel, h('p', { class: 'muted' }, 'This run has no jobs.')); return; }
    let log = state.logs.get(job.id);
    if (!log) { log = new LogView(job.id); state.logs.set(job.id, log); log.load(); }
    const approvals = (job.approvals || []).filter((a) => a.state === 'pending').map((a) => h('div', { class: 'approval' },
      `Deployment to ${a.environment} needs a reviewer.`,
      h('button', { class: 'primary', onclick: () => decide(a.id, true) }, 'Approve'),
      h('button', { class: 'danger', onclick: () => decide(a.id, false) }, 'Reject')));
    put(panel, 
      h('h2', {}, job.name, ' ', badge(job.status, job.conclusion)),
      job.waiting_reason ? h('p', { class: 'muted', id: 'waiting-reason' }, job.waiting_reason) : null,
      ...approvals,
      h('ul', { class: 'steps' }, (job.steps || []).map((s) => h('li', {}, badge(s.status, s.conclusion), s.name, h('span', { class: 't' }, dur(s.started_at, s.finished_at))))),
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
  constructor(jobId) {
    this.jobId = jobId;
    this.lines = [];
    this.collapsed = new Set();
    this.visible = [];
    this.el = h('div', { class: 'log', id: 'log' });
    this.spacer = h('div', { class: 'spacer' });
    this.el.append(this.spacer);
    this.el.addEventListener('scroll', () => this.paint());
    this.annotationsEl = h('div', { class: 'annotations', id: 'annotations' });
    this.countEl = h('span', { class: 'muted', id: 'log-count' });
    this.follow = true;
    this.pending = false;
  }
  async load() {
    const text = await api(`/api/v1/jobs/${this.jobId}/logs/raw`);
    const lines = text ? text.replace(/\n$/, '').split('\n') : [];
    // Live chunks may have arrived meanwhile; the stored text is authoritative up to its length.
    if (lines.length >= this.lines.length) this.lines = lines;
    this.reindex();
  }
  addChunk(firstLine, text) {
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
    this.countEl.textContent = `${this.lines.length} lines`;
    put(this.annotationsEl, ...ann.map(([kind, msg, i]) => h('div', { class: kind, onclick: () => this.scrollToLine(i) }, `${kind}: ${msg}`)));
    const atBottom = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - 2 * ROW;
    if (this.follow && atBottom) this.el.scrollTop = this.el.scrollHeight;
    this.paint();
  }
  scrollToLine(i) {
    const idx = this.visible.indexOf(i);
    if (idx >= 0) this.el.scrollTop = idx * ROW;
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
      const row = h('div', { class: cls, style: `top:${k * ROW}px`, 'data-line': i + 1 }, h('span', { class: 'n' }, i + 1), text);
      if (cls.includes('group')) row.addEventListener('click', () => {
        if (this.collapsed.has(i)) this.collapsed.delete(i); else this.collapsed.add(i);
        this.build();
      });
      rows.push(row);
    }
    put(this.spacer, ...rows);
  }
}

// ---- Agents and approvals --------------------------------------------------
async function agentsPage(main) {
  const agents = await api('/api/v1/agents');
  put(main, h('h1', {}, 'Agents'), h('table', {},
    h('thead', {}, h('tr', {}, ['name', 'labels', 'capacity', 'free', 'connected', 'last seen'].map((c) => h('th', {}, c)))),
    h('tbody', {}, agents.map((a) => h('tr', {},
      h('td', {}, a.name + (a.embedded ? ' (embedded)' : '')), h('td', {}, a.labels.join(', ')), h('td', {}, a.capacity),
      h('td', {}, a.free_slots ?? ''), h('td', {}, a.connected ? h('span', { class: 's-success' }, 'yes') : h('span', { class: 's-failure' }, 'no')),
      h('td', {}, when(a.last_seen)))))));
}

async function approvalsPage(main) {
  const list = await api('/api/v1/approvals?pending=false');
  const row = (a) => h('tr', {},
    h('td', {}, h('a', { href: '#/runs/' + a.run_id }, '#' + a.run_id)), h('td', {}, a.environment), h('td', {}, a.state),
    h('td', {}, a.reviewer || ''), h('td', {}, a.comment || ''),
    h('td', {}, a.state === 'pending' ? [
      h('button', { class: 'primary', onclick: () => decide(a.id, true) }, 'Approve'), ' ',
      h('button', { class: 'danger', onclick: () => decide(a.id, false) }, 'Reject')] : when(a.decided_at)));
  async function decide(id, approve) {
    const comment = approve ? '' : (prompt('Reason for rejecting?') || '');
    try { await api('/api/v1/approvals/' + id, { method: 'POST', body: JSON.stringify({ approve, comment }) }); route(); } catch (e) { alert(e.message); }
  }
  put(main, h('h1', {}, 'Approvals'), h('table', {},
    h('thead', {}, h('tr', {}, ['run', 'environment', 'state', 'reviewer', 'comment', ''].map((c) => h('th', {}, c)))),
    h('tbody', {}, list.map(row))));
}

route();
