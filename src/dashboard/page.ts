/**
 * The dashboard: one static page (HTML, CSS and plain JS, no build step, no dependency) that
 * reads the admin API in the browser with the admin token the operator types in (kept in
 * sessionStorage). The page itself holds no data, so it is served without the token; every
 * figure it shows comes from a route that needs it.
 */
export const DASHBOARD_HTML = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>botqueue</title>
<style>
  :root { --fg: #1d2430; --muted: #5b6577; --line: #dde2ea; --bad: #b42318; --ok: #067647; --accent: #2f5bd3; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: #f6f7f9; }
  header { display: flex; gap: 1rem; align-items: center; padding: .6rem 1.2rem; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 1.1rem; margin: 0; }
  header .status { color: var(--muted); margin-left: auto; }
  main { padding: 1rem 1.2rem; display: grid; gap: 1rem; grid-template-columns: 1fr 1fr; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .8rem 1rem; min-width: 0; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: .95rem; margin: 0 0 .6rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--muted); font-weight: 600; font-size: .8rem; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  tr.clickable { cursor: pointer; } tr.clickable:hover { background: #eef2fb; }
  .bad { color: var(--bad); font-weight: 600; } .ok { color: var(--ok); } .muted { color: var(--muted); }
  input, select, button { font: inherit; padding: .25rem .5rem; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
  button { cursor: pointer; } button.primary { background: var(--accent); color: #fff; border-color: var(--accent); } button.danger { color: var(--bad); }
  .filters { display: flex; gap: .4rem; flex-wrap: wrap; margin-bottom: .6rem; }
  pre { background: #f3f4f6; padding: .5rem; overflow: auto; max-height: 16rem; margin: .3rem 0; }
  svg.spark { vertical-align: middle; }
  #login { max-width: 28rem; margin: 3rem auto; }
  .hidden { display: none !important; }
</style>
</head>
<body>
<header><h1>botqueue</h1><span class="muted">operator dashboard</span><span class="status" id="status">…</span></header>
<section id="login" class="hidden">
  <h2>Admin token</h2>
  <p class="muted">The server needs <code>Authorization: Bearer $BOTQUEUE_ADMIN_TOKEN</code> for its admin routes.</p>
  <form id="login-form"><input id="token" type="password" placeholder="BOTQUEUE_ADMIN_TOKEN" size="32" autocomplete="off"> <button class="primary">Open</button></form>
  <p id="login-error" class="bad"></p>
</section>
<main id="app" class="hidden">
  <section class="wide"><h2>Topics</h2><table id="topics"></table></section>
  <section><h2>Groups and partitions</h2><table id="groups"></table></section>
  <section><h2>Dead letters by error</h2><table id="summary"></table></section>
  <section class="wide">
    <h2>Dead letters</h2>
    <form class="filters" id="dlq-filters">
      <input name="topic" placeholder="topic"><input name="group" placeholder="group"><input name="key" placeholder="key"><input name="errorContains" placeholder="error contains">
      <button>Filter</button>
      <button type="button" id="redrive-all">Redrive matching</button><button type="button" class="danger" id="purge-all">Purge matching</button>
    </form>
    <table id="dlq"></table>
  </section>
  <section class="wide hidden" id="detail"></section>
</main>
<script>
'use strict';
const state = { token: sessionStorage.getItem('botqueue.token') || '', history: {}, settled: {}, filter: {} };
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const age = (ms) => ms <= 0 ? '-' : ms < 1000 ? ms + ' ms' : ms < 60000 ? (ms / 1000).toFixed(1) + ' s' : ms < 3600000 ? Math.round(ms / 60000) + ' min' : (ms / 3600000).toFixed(1) + ' h';
const time = (ms) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.authorization = 'Bearer ' + state.token;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) { showLogin('the token was refused'); throw new Error('unauthorized'); }
  const text = await res.text();
  if (!res.ok) { let m = text; try { m = JSON.parse(text).message; } catch {} throw new Error(res.status + ': ' + m); }
  return method === 'GET' && path === '/metrics' ? text : JSON.parse(text);
}

function showLogin(error) { $('app').classList.add('hidden'); $('login').classList.remove('hidden'); $('login-error').textContent = error || ''; }
$('login-form').addEventListener('submit', (e) => { e.preventDefault(); state.token = $('token').value.trim(); sessionStorage.setItem('botqueue.token', state.token); start(); });

/** A small SVG line of the last values. */
function spark(values) {
  if (values.length < 2) return '<span class="muted">…</span>';
  const w = 120, h = 24, max = Math.max(1, ...values);
  const pts = values.map((v, i) => (i * w / (values.length - 1)).toFixed(1) + ',' + (h - v / max * (h - 2) - 1).toFixed(1)).join(' ');
  return '<svg class="spark" width="' + w + '" height="' + h + '"><polyline fill="none" stroke="#2f5bd3" stroke-width="1.5" points="' + pts + '"/></svg>';
}

/** Settled handler runs per topic, summed from /metrics, to derive a rate between two refreshes. */
function settledByTopic(text) {
  const out = {};
  for (const line of text.split('\\n')) {
    const m = /^botqueue_messages_settled_total\\{topic="([^"]*)",group="[^"]*",outcome="ack"\\} (\\S+)$/.exec(line);
    if (m) out[m[1]] = (out[m[1]] || 0) + Number(m[2]);
  }
  return out;
}

async function refresh() {
  const [stats, metrics] = await Promise.all([api('GET', '/v1/stats'), api('GET', '/metrics').catch(() => '')]);
  const now = Date.now();
  const settled = settledByTopic(metrics);
  let topicRows = '<tr><th>Topic</th><th class="num">Partitions</th><th class="num">Retained</th><th class="num">Backlog</th><th>Backlog, last minutes</th><th class="num">Lag</th><th class="num">Handled/s</th><th class="num">DLQ</th><th class="num">Parked keys</th></tr>';
  let groupRows = '<tr><th>Topic / group</th><th class="num">Members</th><th>Partitions (backlog · owner)</th></tr>';
  for (const t of stats.topics) {
    const backlog = t.groups.reduce((s, g) => Math.max(s, g.backlog), 0);
    const lag = t.groups.reduce((s, g) => Math.max(s, g.oldestAgeMs), 0);
    const dlq = t.groups.reduce((s, g) => s + g.deadLetters, 0);
    const parked = t.groups.reduce((s, g) => s + g.parkedKeys, 0);
    const h = (state.history[t.topic] = (state.history[t.topic] || []).concat([backlog]).slice(-90));
    const prev = state.settled[t.topic];
    const rate = prev && settled[t.topic] !== undefined ? Math.max(0, (settled[t.topic] - prev.value) / ((now - prev.at) / 1000)) : null;
    if (settled[t.topic] !== undefined) state.settled[t.topic] = { value: settled[t.topic], at: now };
    topicRows += '<tr data-topic="' + esc(t.topic) + '"><td>' + esc(t.topic) + (t.groups.length === 0 ? ' <span class="muted">(no group: ' + t.retained + ' waiting)</span>' : '') + '</td><td class="num">' + t.partitions + '</td><td class="num">' + t.retained + '</td><td class="num">' + backlog + '</td><td>' + spark(h) + '</td><td class="num">' + age(lag) + '</td><td class="num">' + (rate === null ? '-' : rate.toFixed(1)) + '</td><td class="num ' + (dlq > 0 ? 'bad' : '') + '">' + dlq + '</td><td class="num ' + (parked > 0 ? 'bad' : '') + '">' + parked + '</td></tr>';
    for (const g of t.groups) {
      const parts = g.partitions.map((p) => p.partition + ':' + p.backlog + '·' + (p.owner ? esc(p.owner.slice(0, 12)) : '-')).join('  ');
      groupRows += '<tr><td>' + esc(t.topic) + ' / <b>' + esc(g.group) + '</b>' + (g.orderViolations > 0 ? ' <span class="bad">order violations ' + g.orderViolations + '</span>' : '') + '</td><td class="num ' + (g.idle ? 'bad' : 'ok') + '">' + (g.idle ? '0 (idle)' : g.members) + '</td><td class="muted" style="white-space:normal">' + parts + '</td></tr>';
    }
  }
  $('topics').innerHTML = topicRows;
  $('groups').innerHTML = groupRows;
  $('status').textContent = 'updated ' + new Date(now).toLocaleTimeString();
}

function filterQuery() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(state.filter)) if (v) q.set(k, v);
  return q;
}

async function refreshDlq() {
  const q = filterQuery();
  const s = new URLSearchParams();
  if (state.filter.topic) s.set('topic', state.filter.topic);
  if (state.filter.group) s.set('group', state.filter.group);
  const [page, summary] = await Promise.all([api('GET', '/v1/dead-letters?' + q.toString() + '&limit=100'), api('GET', '/v1/dead-letters/summary?' + s.toString())]);
  let rows = '<tr><th class="num">#</th><th>Topic / group</th><th>Key</th><th>Message id</th><th class="num">Attempts</th><th>Last failure</th><th>Error</th></tr>';
  for (const d of page.deadLetters) {
    rows += '<tr class="clickable dead-letter" data-id="' + d.dlqId + '"><td class="num">' + d.dlqId + '</td><td>' + esc(d.topic) + ' / ' + esc(d.group) + '</td><td>' + esc(d.key === null ? '-' : d.key) + (d.parked ? ' <span class="bad">parked</span>' : '') + '</td><td>' + esc(d.id) + '</td><td class="num">' + d.attempts + '</td><td>' + time(d.lastFailedAt) + '</td><td class="bad">' + esc(d.error.message.slice(0, 80)) + '</td></tr>';
  }
  if (page.deadLetters.length === 0) rows += '<tr><td colspan="7" class="muted" id="dlq-empty">no dead letters match</td></tr>';
  $('dlq').innerHTML = rows;
  let sum = '<tr><th>Topic / group</th><th>Error</th><th class="num">Count</th><th class="num">Parked</th></tr>';
  for (const e of summary.summary) sum += '<tr class="clickable summary-row" data-error="' + esc(e.error) + '" data-topic="' + esc(e.topic) + '"><td>' + esc(e.topic) + ' / ' + esc(e.group) + '</td><td class="bad">' + esc(e.error.slice(0, 60)) + '</td><td class="num">' + e.count + '</td><td class="num">' + e.parked + '</td></tr>';
  if (summary.summary.length === 0) sum += '<tr><td colspan="4" class="muted">empty</td></tr>';
  $('summary').innerHTML = sum;
}

async function showDetail(id) {
  const { deadLetter: d } = await api('GET', '/v1/dead-letters/' + id);
  const box = $('detail');
  box.innerHTML = '<h2>Dead letter #' + d.dlqId + ' <span class="muted">' + esc(d.topic) + ' / ' + esc(d.group) + ', partition ' + d.partition + ', seq ' + d.seq + '</span></h2>' +
    '<p>message id <b>' + esc(d.id) + '</b> · key <b>' + esc(d.key === null ? '-' : d.key) + '</b> · attempts <b>' + d.attempts + '</b> · published ' + time(d.publishedAt) + ' · failed first ' + time(d.firstFailedAt) + ', last ' + time(d.lastFailedAt) + (d.parked ? ' · <span class="bad">its key is parked</span>' : '') + '</p>' +
    '<p class="bad">' + esc(d.error.message) + '</p><pre id="detail-stack">' + esc(d.error.stack || '(no stack)') + '</pre>' +
    '<h2>Payload</h2><pre id="detail-payload">' + esc(JSON.stringify(d.payload, null, 2)) + '</pre>' +
    (Object.keys(d.headers || {}).length ? '<h2>Headers</h2><pre>' + esc(JSON.stringify(d.headers, null, 2)) + '</pre>' : '') +
    '<p><button class="primary" id="redrive-one">Redrive</button> <button class="danger" id="purge-one">Purge</button> <button id="close-detail">Close</button></p>';
  box.classList.remove('hidden');
  $('close-detail').onclick = () => box.classList.add('hidden');
  $('redrive-one').onclick = () => act('redrive', { dlqIds: [d.dlqId] }, 'Redrive dead letter #' + d.dlqId + ' (message ' + d.id + ') back to ' + d.topic + '?');
  $('purge-one').onclick = () => act('purge', { dlqIds: [d.dlqId] }, 'Purge dead letter #' + d.dlqId + ' for good?');
}

async function act(action, filter, question) {
  if (!confirm(question)) return;
  try {
    const result = await api('POST', '/v1/dead-letters/' + action, filter);
    $('status').textContent = action === 'redrive' ? result.redriven + ' redriven' : result.purged + ' purged';
    $('detail').classList.add('hidden');
  } catch (error) { alert(action + ' failed: ' + error.message); }
  await Promise.all([refresh(), refreshDlq()]);
}

$('dlq-filters').addEventListener('submit', (e) => { e.preventDefault(); state.filter = Object.fromEntries(new FormData(e.target)); refreshDlq(); });
$('dlq').addEventListener('click', (e) => { const row = e.target.closest('tr.dead-letter'); if (row) showDetail(row.dataset.id); });
$('summary').addEventListener('click', (e) => {
  const row = e.target.closest('tr.summary-row'); if (!row) return;
  const form = $('dlq-filters'); form.topic.value = row.dataset.topic; form.errorContains.value = row.dataset.error; form.requestSubmit();
});
function matching() { const f = { ...state.filter }; for (const k of Object.keys(f)) if (!f[k]) delete f[k]; return f; }
$('redrive-all').onclick = () => { const f = matching(); act('redrive', Object.keys(f).length ? f : { all: true }, 'Redrive every dead letter matching ' + (JSON.stringify(f) === '{}' ? '(everything)' : JSON.stringify(f)) + '?'); };
$('purge-all').onclick = () => { const f = matching(); act('purge', Object.keys(f).length ? f : { all: true }, 'Purge every dead letter matching ' + (JSON.stringify(f) === '{}' ? '(everything)' : JSON.stringify(f)) + ' for good?'); };

let timer;
async function start() {
  try { await Promise.all([refresh(), refreshDlq()]); } catch (error) { if (error.message !== 'unauthorized') $('status').textContent = error.message; return; }
  $('login').classList.add('hidden'); $('app').classList.remove('hidden');
  clearInterval(timer);
  timer = setInterval(() => { refresh().catch((e) => ($('status').textContent = e.message)); refreshDlq().catch(() => {}); }, 2000);
}
start();
</script>
</body>
</html>
`;
