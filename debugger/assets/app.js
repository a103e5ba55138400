// The woorelay debugger page: plain JavaScript, no framework and no build step, served from
// the relay's binary. It talks to /debugger/api/* and to the admin API (/admin/*) on the
// same listener.

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const pad2 = (n) => String(n).padStart(2, '0');
// time shows a moment in the browser's time zone with its date: 2026-12-07 23:51:29.123.
const time = (t) => {
  const d = new Date(t);
  if (isNaN(d) || d.getTime() <= 0) return '';
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
};
const clock = (t) => time(t).slice(11, 19); // 23:51:29
const plural = (n, one, many = one + 's') => `${n} ${n === 1 ? one : many}`;
// stageText says where a dead letter was made.
const stageText = { edge: 'rejected at the edge', mapping: 'rejected by the mapping', delivery: 'refused by Woopra' };

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
  if (r.outcome === 'filtered' || r.outcome === 'refused' || (r.outcome === 'dead_lettered' && r.stage !== 'delivery')) return esc([r.code, r.reason].filter(Boolean).join(': '));
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
    if (q.attempts.length > 1) s += ', ' + plural(q.attempts.length, 'attempt');
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
    `<td class="mono visitor" title="${esc(r.visitor)}">${esc(r.visitor)}</td><td><span class="badge ${esc(r.outcome)}">${esc(r.outcome)}</span>` +
    (r.stage ? ` <span class="note stage">${esc(stageText[r.stage] || r.stage)}</span>` : '') +
    (r.replays ? ' <span class="note">replayed</span>' : '') +
    (r.duplicates ? ` <span class="note dups" title="sent again with the same messageId; the queue dropped them">+${plural(r.duplicates, 'duplicate')}</span>` : '') + '</td>' +
    `<td>${became(r)}</td><td class="mono">${answered(r)}</td>`;
  return tr;
}
function render() {
  const f = filters();
  const body = $('#events tbody');
  const rows = [...events.values()].filter((r) => matches(r, f)).sort((a, b) => (b.seq || b.id) - (a.seq || a.id)).slice(0, 500);
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
  // On the next frame; a tab in the background gets no frames, so a timer renders it too.
  const go = () => { if (renderQueued) { renderQueued = false; render(); } };
  requestAnimationFrame(go);
  setTimeout(go, 250);
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

// readable adds the date an epoch-milliseconds timestamp parameter stands for.
function readable(k, v) {
  if (k === 'timestamp' && /^\d{12,14}$/.test(v)) return ` <span class="note when">(${esc(time(Number(v)))})</span>`;
  return '';
}
function paramsTable(params, cls = 'params') {
  return `<table class="${cls}"><tbody>${(params || []).map((p) => {
    const [k, v] = Array.isArray(p) ? p : [p.Name, p.Value];
    return `<tr><td class="mono">${esc(k)}</td><td class="mono">${esc(v)}${readable(k, v)}</td></tr>`;
  }).join('')}</tbody></table>`;
}
function headersTable(headers) {
  const hs = Array.isArray(headers) ? headers : Object.entries(headers || {});
  return hs.length ? `<h4>headers</h4>${paramsTable(hs, 'params headers')}` : '';
}
function requestView(q, i, title) {
  return `<h3>${title || 'request ' + (i + 1)}: ${esc(q.method)} ${esc(q.endpoint)}</h3>${paramsTable(q.params)}${headersTable(q.headers)}<h3>Woopra answered</h3>${attemptsTable(q.attempts)}`;
}
function attemptsTable(attempts) {
  if (!attempts || !attempts.length) return '<p class="note">not answered yet</p>';
  return `<table class="attempts"><thead><tr><th>at</th><th>status</th><th>latency</th><th>meaning</th><th>answer</th></tr></thead><tbody>${attempts.map((a) =>
    `<tr><td class="mono">${time(a.at)}</td><td>${a.status || 'none'}</td><td>${a.latency_ms.toFixed(1)} ms</td><td>${esc(a.class)}${a.retry_after ? ' (Retry-After ' + esc(a.retry_after) + ')' : ''}</td><td class="mono">${esc(a.error || a.body)}</td></tr>`).join('')}</tbody></table>`;
}
// steps renders a field's trace steps, one run of candidates with the same fate
// ("first[0] a: missing", "first[1] b: missing", ...) on one line: "missing: a, b".
function steps(list) {
  const out = [];
  let run = null;
  for (const s of list || []) {
    const m = /^first\[\d+\] (.+): ([a-z ]+)$/.exec(s);
    if (m && run && run.why === m[2]) { run.paths.push(m[1]); continue; }
    if (run) out.push(runText(run));
    run = null;
    if (m) { run = { why: m[2], paths: [m[1]] }; continue; }
    out.push(s.includes('(wins)') ? `<span class="won">${esc(s)}</span>` : esc(s));
  }
  if (run) out.push(runText(run));
  return out;
}
function runText(run) {
  return run.paths.length === 1 ? esc(`${run.paths[0]}: ${run.why}`) : `<span class="lost">${esc(run.why)}:</span> ${esc(run.paths.join(', '))}`;
}
function traceView(x) {
  if (!x) return '';
  const t = x.trace || {};
  let h = '';
  if (x.error && !x.trace) return `<p class="note">${esc(x.error)}</p>`;
  const rows = [];
  for (const w of t.When || []) rows.push(['mapping', `${esc(w.Mapping)}: when ${esc(w.When || '(always)')} → <b class="${w.Matched ? 'won' : 'lost'}">${w.Err ? 'error: ' + esc(w.Err) : w.Matched}</b>`, '']);
  for (const f of t.Fields || []) rows.push([esc(f.Name), steps(f.Steps).join('<br>') + ` ⇒ <b>${f.Absent ? '(absent)' : esc(f.Value)}</b>`, `${esc(f.File)}:${f.Line}:${f.Col}`]);
  for (const s of t.Spreads || []) {
    let d = `spread ${esc(s.From || '(no object)')}: copied ${(s.Copied || []).length} [${esc((s.Copied || []).join(', '))}]`;
    if ((s.Excluded || []).length) d += `; excluded [${esc(s.Excluded.join(', '))}]`;
    if ((s.Collided || []).length) d += `; collided [${esc(s.Collided.join(', '))}]`;
    rows.push([esc(s.Prefix) + '*', d, `${esc(s.File)}:${s.Line}:${s.Col}`]);
  }
  if (t.Identity) rows.push(['identity', esc(t.Identity), '']);
  // Each row: the field's name and its place in the mapping on one line, its steps beneath
  // across the whole width.
  h += `<table class="trace">${rows.map((r) => `<tbody class="field"><tr><td class="mono name">${r[0]}${r[2] ? ` <span class="where">${r[2]}</span>` : ''}</td></tr><tr><td class="mono steps">${r[1]}</td></tr></tbody>`).join('')}</table>`;
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
  pane.innerHTML = `<h2>${esc(r.type)} ${esc(r.name)} <span class="badge ${esc(r.outcome)}">${esc(r.outcome)}</span>${r.stage ? ` <span class="note">${esc(stageText[r.stage] || r.stage)}</span>` : ''}</h2>` +
    `<p class="note">source ${esc(r.source)} · messageId <span class="mono">${esc(r.message_id)}</span> · visitor <span class="mono">${esc(r.visitor)}</span> · received <span class="mono">${time(r.received)}</span></p>` +
    (r.duplicates ? `<p id="duplicates" class="dups">${plural(r.duplicates, 'duplicate')}: sent again with the same messageId, the latest at <span class="mono">${time(r.duplicate_at)}</span>; the queue dropped ${r.duplicates === 1 ? 'it' : 'them'}</p>` : '') +
    (r.reason ? `<p>${esc([r.code, r.reason].filter(Boolean).join(': '))}</p>` : '') +
    (r.requests || []).map((q, i) => requestView(q, i)).join('') +
    (r.earlier || []).map((q, i) => requestView(q, i, `before the replay, request ${i + 1}`)).join('') +
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
    tr.innerHTML = `<td><input type="checkbox" class="pick" value="${d.id}"></td><td>${d.id}</td><td class="mono">${time(d.at)}</td><td>${esc(d.source)}</td>` +
      `<td>${esc(d.type)}</td><td>${esc(d.event_name)}</td><td class="mono">${esc(visitorOf(d.visitor))}</td>` +
      `<td>${esc(d.reason)}</td><td>${d.status || ''}</td><td>${d.attempts}</td><td><button type="button" class="replay" data-id="${d.id}">Replay</button></td>`;
    return tr;
  }));
  $('#dlq-empty').hidden = letters.length > 0;
}
// visitorOf drops the queue's u:/a: prefix from a dead letter's ordering key.
const visitorOf = (v) => /^[ua]:/.test(v || '') ? v.slice(2) : (v || '');
// answerText is Woopra's answer without its status twice ("403 403 Forbidden").
const answerText = (status, response) => {
  const r = String(response || '').trim();
  if (!status) return r;
  return r.startsWith(String(status)) ? r : (status + ' ' + r).trim();
};
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
    `<p>${esc(d.reason)}</p><p class="note">${esc(d.type)} ${esc(d.event_name)} · source ${esc(d.source)} · visitor <span class="mono">${esc(visitorOf(d.visitor))}</span> · ${plural(d.attempts, 'attempt')} · received <span class="mono">${time(d.received)}</span></p>` +
    (d.request ? `<h3>failed request</h3><pre>${esc(d.request)}</pre>` : '') +
    `<h3>Woopra answered</h3><pre id="dlq-answer">${esc(answerText(d.status, d.response))}</pre>` +
    (d.requests || []).map((q, i) => `<h3>request ${i + 1}: ${esc(q.method)} ${esc(new URL(q.url).pathname)}</h3>${paramsTable([...new URL(q.url).searchParams.entries()])}${headersTable(q.headers)}`).join('') +
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
// chart draws series (arrays of numbers, one a second) over the times (unix seconds) in svg, at
// the svg's own size so its text is not scaled. Series drawn later are thinner and dashed, so
// one that equals an earlier one (in = out, a 403 run under a 500 run) still shows.
const dashes = ['', '6 4', '2 3', '8 3 2 3', '1 4'];
function chart(svg, series, colors, opts = {}) {
  const W = Math.max(300, Math.round(svg.clientWidth || 600)), H = 160, left = 44, bottom = 22, right = 8, topPad = 8;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const times = opts.times || [];
  const n = Math.max(1, ...series.map((s) => s.length));
  const top = Math.max(1, ...series.flat());
  const x = (i) => left + (W - left - right) * (n === 1 ? 1 : i / (n - 1));
  const y = (v) => H - bottom - (H - bottom - topPad) * (v / top);
  const digits = opts.digits ?? 0;
  const num = (v) => (Number.isInteger(v) && !digits ? String(v) : v.toFixed(Math.max(digits, 1)));
  let h = `<line x1="${left}" y1="${H - bottom}" x2="${W - right}" y2="${H - bottom}" class="axis"/>` +
    `<line x1="${left}" y1="${topPad}" x2="${left}" y2="${H - bottom}" class="axis"/>` +
    `<line x1="${left}" y1="${y(top / 2)}" x2="${W - right}" y2="${y(top / 2)}" class="grid"/>` +
    `<text x="${left - 4}" y="${topPad + 4}" text-anchor="end">${num(top)}</text>` +
    `<text x="${left - 4}" y="${y(top / 2) + 4}" text-anchor="end">${num(top / 2)}</text>` +
    `<text x="${left - 4}" y="${H - bottom + 4}" text-anchor="end">0</text>`;
  if (times.length) {
    const ticks = [...new Set([0, Math.floor((times.length - 1) / 4), Math.floor((times.length - 1) / 2), Math.floor(3 * (times.length - 1) / 4), times.length - 1])];
    for (const i of ticks) {
      const anchor = i === 0 ? 'start' : i === times.length - 1 ? 'end' : 'middle';
      h += `<line x1="${x(i)}" y1="${H - bottom}" x2="${x(i)}" y2="${H - bottom + 4}" class="axis"/><text class="time" x="${x(i)}" y="${H - 5}" text-anchor="${anchor}">${clock(times[i] * 1000)}</text>`;
    }
  }
  series.forEach((s, k) => {
    if (!s.length) return;
    const dash = dashes[k % dashes.length];
    h += `<polyline fill="none" stroke="${colors[k % colors.length]}" stroke-width="${k === 0 ? 2.6 : 1.6}"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${s.map((v, i) => x(i).toFixed(1) + ',' + y(v).toFixed(1)).join(' ')}"/>`;
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
    const times = s.map((b) => b.t);
    chart($('#chart-rate'), [s.map((b) => b.in), s.map((b) => b.out)], ['#3559e0', '#1f8a4c'], { times });
    chart($('#chart-latency'), [s.map((b) => b.latency_avg), s.map((b) => b.latency_max)], ['#1f8a4c', '#3559e0'], { times, digits: 1 });
    chart($('#chart-concurrency'), [s.map((b) => b.limit), s.map((b) => b.in_flight)], ['#3559e0', '#1f8a4c'], { times });
    $('#baseline').textContent = s.length ? s[s.length - 1].baseline_ms.toFixed(1) : '-';
    const statuses = [...new Set(s.flatMap((b) => Object.keys(b.errors || {})))].sort();
    const palette = ['#c53030', '#b7791f', '#805ad5', '#dd6b20', '#2c7a7b'];
    chart($('#chart-errors'), statuses.length ? statuses.map((st) => s.map((b) => (b.errors || {})[st] || 0)) : [s.map(() => 0)], palette, { times });
    $('#error-legend').innerHTML = statuses.length ? statuses.map((st, i) => `<b style="color:${palette[i % palette.length]}">${i ? '╌ ' : '━ '}${st === '0' ? 'no answer' : esc(st)}</b>`).join(' ') : '(none)';
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
