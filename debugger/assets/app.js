// The woorelay debugger page: plain JavaScript, no framework and no build step, served from
// the relay's binary. It talks to /debugger/api/* and to the admin API (/admin/*) on the
// same listener.

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const time = (t) => { const d = new Date(t); return isNaN(d) ? '' : d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0'); };

async function api(path, body) {
  const opts = body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  const res = await fetch(path, opts);
  if (res.status === 401) location.href = '/debugger/login'; // an admin token is set: sign in
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.message || res.statusText);
  return data;
}

// ---- tabs ----
function showTab() {
  const tab = (location.hash || '#live').slice(1);
  for (const s of document.querySelectorAll('.tab')) s.hidden = s.id !== 'tab-' + tab;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.tab === tab);
  if (tab === 'dlq') loadDLQ();
  if (tab === 'playground') runPlayground();
  if (tab === 'health') loadHealth();
}
window.addEventListener('hashchange', showTab);

// ---- live events ----
const events = new Map(); // id -> record
const sources = new Set();
let paused = false, pending = 0, dropped = 0, openID = 0;
const filters = () => ({
  source: $('#f-source').value, name: $('#f-name').value.trim().toLowerCase(), type: $('#f-type').value,
  outcome: $('#f-outcome').value, visitor: $('#f-visitor').value.trim().toLowerCase(),
});
function matches(r, f) {
  return (!f.source || r.source === f.source) && (!f.type || r.type === f.type) && (!f.outcome || r.outcome === f.outcome) &&
    (!f.name || (r.name || '').toLowerCase().includes(f.name)) && (!f.visitor || (r.visitor || '').toLowerCase().includes(f.visitor));
}
function became(r) {
  if (r.outcome === 'filtered' || r.outcome === 'rejected' || r.outcome === 'refused') return esc([r.code, r.reason].filter(Boolean).join(': '));
  return (r.requests || []).map((q) => {
    const ev = (q.params || []).find((p) => p[0] === 'event');
    return esc(q.method + ' ' + q.endpoint) + (ev ? ' <span class="mono">event=' + esc(ev[1]) + '</span>' : '');
  }).join('<br>');
}
function answered(r) {
  return (r.requests || []).map((q) => {
    const a = (q.attempts || [])[q.attempts.length - 1];
    if (!a) return '…';
    let s = (a.status || 'no answer') + ' in ' + a.latency_ms.toFixed(1) + ' ms';
    if (q.attempts.length > 1) s += ', ' + q.attempts.length + ' attempts';
    if (a.class === 'retry') s += a.retry_after ? ', retry after ' + a.retry_after : ', will retry';
    return esc(s);
  }).join('<br>');
}
function row(r) {
  const tr = document.createElement('tr');
  tr.dataset.id = r.id;
  tr.dataset.outcome = r.outcome;
  tr.dataset.messageId = r.message_id;
  if (r.id === openID) tr.className = 'selected';
  tr.innerHTML = `<td class="mono">${time(r.received)}</td><td>${esc(r.source)}</td><td>${esc(r.type)}</td><td>${esc(r.name)}</td>` +
    `<td class="mono">${esc(r.visitor)}</td><td><span class="badge ${esc(r.outcome)}">${esc(r.outcome)}</span>${r.replays ? ' <span class="note">replayed</span>' : ''}</td>` +
    `<td>${became(r)}</td><td class="mono">${answered(r)}</td>`;
  return tr;
}
function render() {
  const f = filters();
  const body = $('#events tbody');
  const rows = [...events.values()].filter((r) => matches(r, f)).sort((a, b) => b.id - a.id).slice(0, 500);
  body.replaceChildren(...rows.map(row));
  $('#events-empty').hidden = events.size > 0;
  let note = paused ? `paused: ${pending} changes waiting` : '';
  if (dropped) note += (note ? '; ' : '') + `${dropped} changes were dropped because this page could not keep up`;
  $('#live-note').textContent = note;
}
let renderQueued = false;
function scheduleRender() {
  if (paused || renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; render(); });
}
function take(r) {
  events.set(r.id, r);
  if (events.size > 2000) events.delete(Math.min(...events.keys()));
  if (!sources.has(r.source)) {
    sources.add(r.source);
    const o = document.createElement('option');
    o.textContent = r.source;
    $('#f-source').append(o);
  }
  if (paused) { pending++; return; }
  scheduleRender();
  if (r.id === openID) openEvent(r.id, false);
}
function connect() {
  const es = new EventSource('api/stream');
  es.addEventListener('event', (m) => take(JSON.parse(m.data)));
  es.addEventListener('dropped', (m) => { dropped += JSON.parse(m.data).dropped; scheduleRender(); });
  es.addEventListener('ready', () => { $('#status').textContent = 'live'; $('#status').className = 'status live'; render(); });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) api('api/health').catch(() => {}); // a 401 sends to sign-in
    $('#status').textContent = 'reconnecting…'; $('#status').className = 'status off'; };
}
$('#pause').addEventListener('click', () => {
  paused = !paused;
  $('#pause').textContent = paused ? 'Resume' : 'Pause';
  pending = 0;
  render();
});
for (const id of ['#f-source', '#f-type', '#f-outcome']) $(id).addEventListener('change', render);
for (const id of ['#f-name', '#f-visitor']) $(id).addEventListener('input', render);
$('#events tbody').addEventListener('click', (e) => {
  const tr = e.target.closest('tr');
  if (tr) openEvent(Number(tr.dataset.id), true);
});

function paramsTable(params) {
  return `<table class="params"><tbody>${(params || []).map((p) => {
    const [k, v] = Array.isArray(p) ? p : [p.Name, p.Value];
    return `<tr><td class="mono">${esc(k)}</td><td class="mono">${esc(v)}</td></tr>`;
  }).join('')}</tbody></table>`;
}
function attemptsTable(attempts) {
  if (!attempts || !attempts.length) return '<p class="note">not answered yet</p>';
  return `<table class="attempts"><thead><tr><th>at</th><th>status</th><th>latency</th><th>meaning</th><th>answer</th></tr></thead><tbody>${attempts.map((a) =>
    `<tr><td class="mono">${time(a.at)}</td><td>${a.status || 'none'}</td><td>${a.latency_ms.toFixed(1)} ms</td><td>${esc(a.class)}${a.retry_after ? ' (Retry-After ' + esc(a.retry_after) + ')' : ''}</td><td class="mono">${esc(a.error || a.body)}</td></tr>`).join('')}</tbody></table>`;
}
function traceView(x) {
  if (!x) return '';
  const t = x.trace || {};
  let h = '';
  if (x.error && !x.trace) return `<p class="note">${esc(x.error)}</p>`;
  const rows = [];
  for (const w of t.When || []) rows.push(['mapping', `${esc(w.Mapping)}: when ${esc(w.When || '(always)')} → <b class="${w.Matched ? 'won' : 'lost'}">${w.Err ? 'error: ' + esc(w.Err) : w.Matched}</b>`, '']);
  for (const f of t.Fields || []) rows.push([esc(f.Name), (f.Steps || []).map((s) => s.includes('(wins)') ? `<span class="won">${esc(s)}</span>` : esc(s)).join('<br>') + ` ⇒ <b>${f.Absent ? '(absent)' : esc(f.Value)}</b>`, `${esc(f.File)}:${f.Line}:${f.Col}`]);
  for (const s of t.Spreads || []) {
    let d = `spread ${esc(s.From || '(no object)')}: copied ${(s.Copied || []).length} [${esc((s.Copied || []).join(', '))}]`;
    if ((s.Excluded || []).length) d += `; excluded [${esc(s.Excluded.join(', '))}]`;
    if ((s.Collided || []).length) d += `; collided [${esc(s.Collided.join(', '))}]`;
    rows.push([esc(s.Prefix) + '*', d, `${esc(s.File)}:${s.Line}:${s.Col}`]);
  }
  if (t.Identity) rows.push(['identity', esc(t.Identity), '']);
  h += `<table class="trace"><tbody>${rows.map((r) => `<tr><td class="mono">${r[0]}</td><td class="mono">${r[1]}</td><td class="where mono">${r[2]}</td></tr>`).join('')}</tbody></table>`;
  if (x.outcome === 'rejected') h += `<p><span class="badge rejected">rejected</span> ${esc(x.code)}: ${esc(x.error)}</p>`;
  if (x.outcome === 'skipped') h += `<p><span class="badge filtered">skipped</span> ${esc(x.reason)}</p>`;
  return h;
}
async function openEvent(id, scroll) {
  openID = id;
  for (const tr of document.querySelectorAll('#events tbody tr')) tr.classList.toggle('selected', Number(tr.dataset.id) === id);
  const pane = $('#detail');
  let o;
  try { o = await api('api/events/' + id); } catch (err) { pane.hidden = false; pane.innerHTML = `<p class="note">${esc(err.message)}</p>`; return; }
  const r = o.event;
  pane.hidden = false;
  pane.innerHTML = `<h2>${esc(r.type)} ${esc(r.name)} <span class="badge ${esc(r.outcome)}">${esc(r.outcome)}</span></h2>` +
    `<p class="note">source ${esc(r.source)} · messageId <span class="mono">${esc(r.message_id)}</span> · visitor <span class="mono">${esc(r.visitor)}</span> · received ${time(r.received)}</p>` +
    (r.reason ? `<p>${esc([r.code, r.reason].filter(Boolean).join(': '))}</p>` : '') +
    (r.requests || []).map((q, i) => `<h3>request ${i + 1}: ${esc(q.method)} ${esc(q.endpoint)}</h3>${paramsTable(q.params)}<h3>Woopra answered</h3>${attemptsTable(q.attempts)}`).join('') +
    `<h3 id="trace-title">explain trace <span class="note">(the source's running mapping)</span></h3><div id="trace">${traceView(o.explain)}</div>` +
    `<h3>raw event, as stored</h3><pre id="raw">${esc(JSON.stringify(o.raw, null, 2))}</pre>`;
  if (scroll) pane.scrollTop = 0;
}

// ---- dead letters ----
let letters = [];
async function loadDLQ() {
  try {
    const page = await api('../admin/dlq?limit=1000');
    letters = page.dead_letters;
  } catch (err) { $('#dlq-note').textContent = err.message; return; }
  $('#dlq-table tbody').replaceChildren(...letters.map((d) => {
    const tr = document.createElement('tr');
    tr.dataset.dlqId = d.id;
    tr.innerHTML = `<td><input type="checkbox" class="pick" value="${d.id}"></td><td>${d.id}</td><td class="mono">${time(d.at)}</td><td>${esc(d.source)}</td><td class="mono">${esc(d.visitor)}</td>` +
      `<td>${esc(d.reason)}</td><td>${d.status || ''}</td><td>${d.attempts}</td><td><button type="button" class="replay" data-id="${d.id}">Replay</button></td>`;
    return tr;
  }));
  $('#dlq-empty').hidden = letters.length > 0;
}
async function replay(body) {
  try {
    const r = await api('../admin/dlq/replay', body);
    $('#dlq-note').textContent = `replayed ${r.replayed} of ${r.asked}: they are mapped again with the running configuration and delivered; watch them in Live events`;
  } catch (err) { $('#dlq-note').textContent = err.message; }
  $('#dlq-detail').hidden = true;
  loadDLQ();
}
$('#dlq-refresh').addEventListener('click', loadDLQ);
$('#dlq-replay-all').addEventListener('click', () => replay({ all: true }));
$('#dlq-replay-selected').addEventListener('click', () => {
  const ids = [...document.querySelectorAll('#dlq-table .pick:checked')].map((c) => Number(c.value));
  if (ids.length) replay({ ids }); else $('#dlq-note').textContent = 'select dead letters first';
});
$('#dlq-all').addEventListener('change', (e) => { for (const c of document.querySelectorAll('#dlq-table .pick')) c.checked = e.target.checked; });
$('#dlq-table tbody').addEventListener('click', async (e) => {
  if (e.target.matches('.replay')) { replay({ ids: [Number(e.target.dataset.id)] }); return; }
  if (e.target.matches('.pick')) return;
  const tr = e.target.closest('tr');
  if (!tr) return;
  const pane = $('#dlq-detail');
  const d = await api('../admin/dlq/' + tr.dataset.dlqId);
  const x = await api('api/explain', { source: d.source, event: d.event, received: d.received }).catch(() => null);
  pane.hidden = false;
  pane.innerHTML = `<h2>dead letter ${d.id} <button type="button" class="replay" data-id="${d.id}">Replay</button></h2>` +
    `<p>${esc(d.reason)}</p><p class="note">source ${esc(d.source)} · visitor <span class="mono">${esc(d.visitor)}</span> · ${d.attempts} attempts · received ${time(d.received)}</p>` +
    (d.request ? `<h3>failed request</h3><pre>${esc(d.request)}</pre>` : '') +
    `<h3>Woopra answered</h3><pre>${esc((d.status ? d.status + ' ' : '') + (d.response || ''))}</pre>` +
    (d.requests || []).map((q, i) => `<h3>request ${i + 1}: ${esc(q.method)}</h3>${paramsTable([...new URL(q.url).searchParams.entries()])}`).join('') +
    `<h3>explain trace <span class="note">(with the running mapping: what a replay would send)</span></h3>${traceView(x)}` +
    `<h3>event</h3><pre>${esc(JSON.stringify(d.event, null, 2))}</pre>`;
  pane.querySelector('.replay').addEventListener('click', (ev) => { ev.stopPropagation(); replay({ ids: [d.id] }); });
});

// ---- playground ----
let sampleMapping = ''; // sample-mapping.yaml, loaded at start
let pgTimer = 0, pgSeq = 0, pgFindings = [];
function settings() {
  const out = {};
  for (const line of $('#pg-settings').value.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}
function gutter() {
  const n = $('#pg-yaml').value.split('\n').length;
  const bad = new Set(pgFindings.filter((f) => f.file === ($('#pg-mode').value === 'preset' ? 'preset.yaml' : 'mappings.yaml')).map((f) => f.line));
  let s = '';
  for (let i = 1; i <= n; i++) s += (bad.has(i) ? `<b>${i}</b>` : i) + '\n';
  $('#pg-lines').innerHTML = s;
  $('#pg-lines').scrollTop = $('#pg-yaml').scrollTop;
}
async function runPlayground() {
  const seq = ++pgSeq;
  const overlay = $('#pg-mode').value === 'overlay';
  let event;
  try { event = JSON.parse($('#pg-event').value); } catch (err) {
    $('#pg-findings').innerHTML = `<li>event: ${esc(err.message)}</li>`;
    return;
  }
  const body = { event, preset_name: $('#pg-preset-name').value, settings: settings() };
  if (overlay) body.mappings = $('#pg-yaml').value; else body.preset = $('#pg-yaml').value;
  let res;
  try { res = await api('api/playground', body); } catch (err) { $('#pg-findings').innerHTML = `<li>${esc(err.message)}</li>`; return; }
  if (seq !== pgSeq) return; // a later edit already asked
  pgFindings = res.findings;
  $('#pg-findings').innerHTML = res.findings.length
    ? res.findings.map((f, i) => `<li data-i="${i}" data-line="${f.line}" data-col="${f.col}">${esc(f.text)}</li>`).join('')
    : '<li class="none">no findings</li>';
  gutter();
  const x = res.result;
  if (!x) { $('#pg-requests').innerHTML = '<p class="note">the files do not compile: fix the findings above</p>'; $('#pg-trace').innerHTML = ''; return; }
  $('#pg-requests').innerHTML = x.outcome === 'send'
    ? x.requests.map((q) => `<p class="mono">${esc(q.method)} ${esc(q.endpoint)} <span class="note">(mapping ${esc(x.mapping)})</span></p>${paramsTable(q.params)}`).join('')
    : `<p><span class="badge ${x.outcome === 'rejected' ? 'rejected' : 'filtered'}">${esc(x.outcome)}</span> ${esc(x.code ? x.code + ': ' + x.error : x.reason)}</p>`;
  $('#pg-trace').innerHTML = traceView(x);
}
function schedulePlayground() { clearTimeout(pgTimer); pgTimer = setTimeout(runPlayground, 250); }
for (const id of ['#pg-event', '#pg-yaml', '#pg-settings']) $(id).addEventListener('input', () => { gutter(); schedulePlayground(); });
$('#pg-yaml').addEventListener('scroll', () => { $('#pg-lines').scrollTop = $('#pg-yaml').scrollTop; });
$('#pg-preset-name').addEventListener('change', schedulePlayground);
$('#pg-mode').addEventListener('change', () => {
  $('#pg-yaml').value = $('#pg-mode').value === 'overlay' ? sampleMapping : '# paste a whole preset here (kind: preset)\n';
  gutter(); schedulePlayground();
});
$('#pg-findings').addEventListener('click', (e) => {
  const li = e.target.closest('li[data-line]');
  if (!li || !Number(li.dataset.line)) return;
  const ta = $('#pg-yaml'), lines = ta.value.split('\n');
  let pos = 0;
  for (let i = 0; i < Number(li.dataset.line) - 1 && i < lines.length; i++) pos += lines[i].length + 1;
  pos += Math.max(0, Number(li.dataset.col) - 1);
  ta.focus();
  ta.setSelectionRange(pos, pos);
});

// ---- health ----
let healthTimer = 0;
function chart(svg, series, colors, opts = {}) {
  const W = 600, H = 140, pad = 18;
  const n = Math.max(1, ...series.map((s) => s.length));
  const top = Math.max(1, ...series.flat());
  const x = (i) => pad + (W - pad - 4) * (n === 1 ? 1 : i / (n - 1));
  const y = (v) => H - pad - (H - pad - 6) * (v / top);
  let h = `<line x1="${pad}" y1="${H - pad}" x2="${W}" y2="${H - pad}" stroke="#e3e6ec"/>` +
    `<text x="2" y="12">${top.toFixed(opts.digits ?? 0)}</text><text x="2" y="${H - pad}">0</text><text x="${W - 60}" y="${H - 4}">${opts.span || ''}</text>`;
  series.forEach((s, k) => {
    if (!s.length) return;
    h += `<polyline fill="none" stroke="${colors[k % colors.length]}" stroke-width="1.6" points="${s.map((v, i) => x(i).toFixed(1) + ',' + y(v).toFixed(1)).join(' ')}"/>`;
  });
  svg.innerHTML = h;
}
async function loadHealth() {
  clearTimeout(healthTimer);
  if ($('#tab-health').hidden) return;
  try {
    const h = await api('api/health');
    const c = h.counters;
    $('#counters tbody').innerHTML = `<tr>${['received', 'delivered', 'dead_lettered', 'filtered', 'queued', 'duplicates', 'replayed'].map((k) => `<td>${k.replace('_', ' ')}<br><b id="c-${k}">${c[k]}</b></td>`).join('')}` +
      `<td>reconciles<br><b id="c-reconciles" class="${c.reconciles ? 'won' : 'lost'}">${c.reconciles ? 'yes' : 'NO'}</b></td><td>debugger dropped<br><b>${h.dropped}</b></td><td title="events not followed: past the debugger's budget of new events a second">not followed<br><b id="c-skipped">${h.skipped}</b></td></tr>`;
    const s = h.series.slice(-180);
    const span = s.length ? `last ${s.length} s` : '';
    chart($('#chart-rate'), [s.map((b) => b.in), s.map((b) => b.out)], ['#3559e0', '#1f8a4c'], { span });
    chart($('#chart-latency'), [s.map((b) => b.latency_avg), s.map((b) => b.latency_max)], ['#1f8a4c', '#3559e0'], { span, digits: 1 });
    chart($('#chart-concurrency'), [s.map((b) => b.limit), s.map((b) => b.in_flight)], ['#3559e0', '#1f8a4c'], { span });
    $('#baseline').textContent = s.length ? s[s.length - 1].baseline_ms.toFixed(1) : '-';
    const statuses = [...new Set(s.flatMap((b) => Object.keys(b.errors || {})))].sort();
    const palette = ['#c53030', '#b7791f', '#805ad5', '#dd6b20', '#2c7a7b'];
    chart($('#chart-errors'), statuses.length ? statuses.map((st) => s.map((b) => (b.errors || {})[st] || 0)) : [s.map(() => 0)], palette, { span });
    $('#error-legend').innerHTML = statuses.length ? statuses.map((st, i) => `<b style="color:${palette[i % palette.length]}">${st === '0' ? 'no answer' : esc(st)}</b>`).join(' ') : '(none)';
  } catch (err) { $('#counters tbody').innerHTML = `<tr><td>${esc(err.message)}</td></tr>`; }
  healthTimer = setTimeout(loadHealth, 1000);
}

// ---- start ----
async function start() {
  const [ev, mp] = await Promise.all(['sample-event.json', 'sample-mapping.yaml'].map((f) => fetch(f).then((r) => r.text())));
  sampleMapping = mp;
  $('#pg-event').value = ev;
  $('#pg-yaml').value = sampleMapping;
  const names = await api('api/presets').catch(() => ['default']);
  $('#pg-preset-name').innerHTML = names.map((n) => `<option${n === 'default' ? ' selected' : ''}>${esc(n)}</option>`).join('');
  gutter();
  connect();
  showTab();
}
start();
