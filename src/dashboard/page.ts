/**
 * The dashboard's page: plain HTML, CSS and a script that polls `/api/state` and draws the lag
 * charts as inline SVG. Nothing is loaded from anywhere else.
 */

const STYLE = `
:root { --ink: #1b1f24; --muted: #5b6570; --line: #d9dee3; --card: #fff; --bg: #f4f6f8;
  --accent: #1f6feb; --ok: #1a7f37; --bad: #cf222e; --warn-bg: #fff8c5; --warn-line: #d4a72c; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  color: var(--ink); background: var(--bg); }
header { padding: 16px 24px 8px; }
h1 { font-size: 20px; margin: 0 0 2px; }
h2 { font-size: 15px; margin: 0 0 10px; }
.sub { color: var(--muted); }
.notice { margin: 8px 24px 0; padding: 8px 12px; background: var(--warn-bg);
  border: 1px solid var(--warn-line); border-radius: 6px; }
main { padding: 12px 24px 24px; }
.regions { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px; }
.card, .panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.panel { margin-top: 12px; }
.card-head { display: flex; align-items: baseline; gap: 8px; }
.card-head .name { font-size: 18px; font-weight: 600; }
.badge { font-size: 12px; padding: 1px 7px; border-radius: 10px; border: 1px solid var(--line); color: var(--muted); }
.badge.ok { color: var(--ok); border-color: var(--ok); }
.badge.bad { color: var(--bad); border-color: var(--bad); }
.lag { font-size: 26px; font-weight: 600; margin: 6px 0 0; font-variant-numeric: tabular-nums; }
.lag small { font-size: 13px; font-weight: 400; color: var(--muted); }
.chart { width: 100%; height: 96px; display: block; margin: 6px 0 8px; }
.chart text { font-size: 10px; fill: var(--muted); }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
td, th { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid #eef0f2; vertical-align: top; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
.stats td:first-child { color: var(--muted); width: 48%; }
.error { color: var(--bad); }
.muted { color: var(--muted); }
button { font: inherit; padding: 5px 14px; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; }
button:disabled { opacity: .5; cursor: default; }
select { font: inherit; padding: 4px 6px; }
.write-row { display: flex; gap: 8px; align-items: center; margin-bottom: 8px; flex-wrap: wrap; }
.arrived { color: var(--ok); font-weight: 600; }
.waiting { color: var(--muted); }
.timeout { color: var(--bad); font-weight: 600; }
code { font-size: 12px; }
`;

const SCRIPT = `
const $ = (sel) => document.querySelector(sel);
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === 'class') node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) if (child !== null && child !== undefined)
    node.append(child instanceof Node ? child : String(child));
  return node;
}
const ms = (v) => v === null || v === undefined ? '–' : (v < 10 ? v.toFixed(1) : Math.round(v)) + ' ms';
function lagText(s) {
  if (s === null || s === undefined) return '–';
  return s < 1 ? Math.round(s * 1000) + ' ms' : s.toFixed(2) + ' s';
}
function bytesText(b) {
  if (b === null || b === undefined) return '';
  return b < 1024 ? b + ' B' : b < 1048576 ? (b / 1024).toFixed(1) + ' KiB' : (b / 1048576).toFixed(1) + ' MiB';
}
const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
function breakdown(o) {
  const parts = Object.entries(o || {}).filter(([, n]) => n > 0).map(([k, n]) => k.replace(/_/g, ' ') + ' ' + n);
  return parts.length ? ' (' + parts.join(', ') + ')' : '';
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}
function spanText(ms) {
  return ms >= 120000 ? Math.round(ms / 60000) + ' min' : Math.round(ms / 1000) + ' s';
}
/**
 * The lag over the history (or since the dashboard started, if that is shorter): a line, with
 * the highest value marked on the axis.
 */
function chart(points, now, historyMs) {
  const W = 300, H = 96, L = 36, B = 14, T = 6;
  const first = points.length ? points[0][0] : now;
  const span = Math.max(10000, Math.min(historyMs, now - first));
  const root = svg('svg', { class: 'chart', viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img' });
  const values = points.map((p) => p[1]).filter((v) => v !== null);
  const top = Math.max(0.05, ...values) * 1.15;
  const x = (t) => L + (W - L - 2) * (1 - (now - t) / span);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  root.append(svg('line', { x1: L, x2: W - 2, y1: y(0), y2: y(0), stroke: '#d0d7de' }));
  root.append(svg('line', { x1: L, x2: W - 2, y1: y(top / 1.15), y2: y(top / 1.15), stroke: '#eef0f2' }));
  const label = (text, attrs) => { const t = svg('text', attrs); t.textContent = text; root.append(t); };
  label(lagText(top / 1.15), { x: L - 4, y: y(top / 1.15) + 3, 'text-anchor': 'end' });
  label('0', { x: L - 4, y: y(0) + 3, 'text-anchor': 'end' });
  label('-' + spanText(span), { x: L, y: H - 2 });
  label('now', { x: W - 2, y: H - 2, 'text-anchor': 'end' });
  let d = '';
  let pen = false;
  for (const [t, v] of points) {
    if (v === null) { pen = false; continue; }
    d += (pen ? 'L' : 'M') + x(t).toFixed(1) + ' ' + y(v).toFixed(1);
    pen = true;
  }
  if (d) root.append(svg('path', { d, fill: 'none', stroke: '#1f6feb', 'stroke-width': 2.5, 'stroke-linejoin': 'round', 'vector-effect': 'non-scaling-stroke' }));
  if (!values.length) label('no lag reported', { x: (L + W) / 2, y: H / 2, 'text-anchor': 'middle' });
  return root;
}

function regionCard(r, state) {
  const f = r.figures;
  const ready = r.ready === null ? el('span', { class: 'badge' }, 'readiness ?')
    : el('span', { class: 'badge ' + (r.ready ? 'ok' : 'bad') }, r.ready ? 'ready' : 'not ready');
  const lagFigure = r.role === 'primary'
    // The primary is where writes happen: nothing to replay, so its lag is 0 by definition.
    ? el('div', { class: 'lag', 'data-lag': '0' }, 'lag 0 ms ', el('small', {}, 'the primary: nothing to replay'))
    : el('div', { class: 'lag', 'data-lag': f && f.lagSeconds !== null ? String(f.lagSeconds) : '' },
        'lag ' + lagText(f ? f.lagSeconds : null) + ' ',
        el('small', {}, f ? [bytesText(f.lagBytes) + ' behind', f.replicaUsable === false ? 'replica NOT in use' : 'replica in use'].join(' · ') : ''));
  const rows = [];
  if (f) {
    const pg = f.queries.postgresql || {};
    const replica = pg.replica || {}, primary = pg.primary || {};
    const primaryReads = Object.assign({}, primary); delete primaryReads.write; delete primaryReads.transaction;
    const waits = f.replicationWaits;
    rows.push(['Reads on the replica', sum(replica) + breakdown(replica)]);
    rows.push(['Reads on the primary', sum(primaryReads) + breakdown(primaryReads)]);
    rows.push(['Writes (on the primary)', (primary.write || 0) + (primary.transaction ? ' (+' + primary.transaction + ' in transactions)' : '')]);
    rows.push(['Reads that waited for replay', waits.count + (waits.count ? ', mean ' + ms(waits.seconds * 1000 / waits.count) : '')]);
    rows.push(['Requests waiting on a token', f.tokenWaits + (f.tokenWaitTimeouts ? ' (' + f.tokenWaitTimeouts + ' timed out)' : '')]);
    rows.push(['Requests replayed to ' + state.primaryRegion, sum(f.replays) + breakdown(f.replays)]);
    rows.push(['Requests seen (readiness checks too)', f.requests]);
    for (const [system, routes] of Object.entries(f.queries)) {
      if (system === 'postgresql') continue;
      rows.push([system[0].toUpperCase() + system.slice(1) + ' commands',
        Object.entries(routes).map(([route, reasons]) => sum(reasons) + ' on the ' + route + breakdown(reasons)).join(', ')]);
    }
  }
  const stats = el('table', { class: 'stats' }, ...rows.map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {}, v))));
  return el('section', { class: 'card', 'data-region': r.region },
    el('div', { class: 'card-head' }, el('span', { class: 'name' }, r.region), el('span', { class: 'badge' }, r.role), ready),
    lagFigure,
    r.role === 'primary' ? null : chart(r.lag, state.now, state.historyMs),
    r.metricsError ? el('p', { class: 'error' }, '/metrics: ' + r.metricsError) : null,
    stats,
    el('p', { class: 'muted' }, el('code', {}, r.instance + '/metrics')));
}

/** The write controls, made once (a redraw would close an open list or swallow a click). */
function writeControls(state) {
  const panel = $('#write');
  panel.replaceChildren(el('h2', {}, 'A write, and where it has arrived'));
  if (!state.canWrite) {
    panel.append(el('p', { class: 'muted' }, 'No write probe was given, so there is nothing to write (see docs/dashboard.md).'));
    return;
  }
  const select = el('select', { id: 'write-region' }, ...state.regions.map((r) => el('option', { value: r.region }, r.region)));
  select.value = state.regions.find((r) => r.role === 'replica')?.region || state.regions[0]?.region;
  const button = el('button', { id: 'write-button' }, 'Write in the chosen region');
  button.addEventListener('click', async () => {
    button.disabled = true;
    const response = await fetch('api/write', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ region: select.value }) });
    if (!response.ok) $('#write-result').replaceChildren(el('p', { class: 'error' }, (await response.json()).error));
    fast = Date.now() + 15000;
    refresh();
  });
  panel.append(el('div', { class: 'write-row' }, 'Write in', select, button,
    el('span', { class: 'muted' }, 'then read it back in every region until it is there: in the writing region with the write\u2019s token (read-your-writes), elsewhere without one (replication as it arrives).')),
    el('div', { id: 'write-result' }));
}

function writeResult(state) {
  const w = state.write;
  const button = $('#write-button');
  if (button) button.disabled = !!(w && (w.state === 'writing' || w.state === 'spreading'));
  const out = el('div', { id: 'write-result' });
  if (!w) return out;
  out.append(el('p', { id: 'write-status', 'data-state': w.state },
    'Write #' + w.id + ' in ' + w.region + ': ', el('strong', {}, w.state),
    w.ranIn ? ' · ran in ' + w.ranIn + ' (' + ms(w.writeMs) + ')' : '',
    w.readPath ? ' · read back at ' : '', w.readPath ? el('code', {}, w.readPath) : '',
    w.error ? el('span', { class: 'error' }, ' · ' + w.error) : ''));
  if (w.arrivals.length) {
    out.append(el('table', { id: 'arrivals' },
      el('tr', {}, ...['region', 'read with', 'arrived', 'after the write', 'reads', 'ran in', 'waited for replay'].map((h) => el('th', {}, h))),
      ...w.arrivals.map((a) => el('tr', { 'data-arrival': a.region, 'data-state': a.state },
        el('td', {}, a.region), el('td', {}, a.withToken ? 'the write\u2019s token' : 'no token'),
        el('td', { class: a.state }, a.state === 'arrived' ? 'arrived' : a.state === 'timeout' ? 'not in time' : 'waiting\u2026'),
        el('td', {}, ms(a.afterMs)), el('td', {}, a.tries), el('td', {}, a.ranIn || '–'), el('td', {}, ms(a.waitMs))))));
  }
  return out;
}

function requestsPanel(state) {
  const time = (at) => new Date(at).toLocaleTimeString([], { hour12: false });
  return el('section', { class: 'panel', id: 'requests' }, el('h2', {}, 'Last requests (the dashboard\\u2019s own), newest first'),
    el('table', {},
      el('tr', {}, ...['time', 'sent to', 'request', 'status', 'ran in', 'waited for replay', 'replay', 'total', 'kind'].map((h) => el('th', {}, h))),
      ...state.requests.slice(0, 14).map((q) => el('tr', {},
        el('td', {}, time(q.at)), el('td', {}, q.entry), el('td', {}, el('code', {}, q.method + ' ' + q.path)),
        el('td', { class: q.error || q.status >= 500 ? 'error' : '' }, q.error || q.status),
        el('td', {}, q.ranIn || '–'), el('td', {}, ms(q.waitMs)), el('td', {}, q.replay || ''),
        el('td', {}, ms(q.totalMs)), el('td', { class: 'muted' }, q.kind)))));
}

let controls = false;
let fast = 0;
let timer = null;
async function refresh() {
  clearTimeout(timer);
  try {
    const state = await (await fetch('api/state', { cache: 'no-store' })).json();
    $('#meta').textContent = 'started by ' + state.startedBy + ' · primary region ' + state.primaryRegion +
      ' · ' + state.regions.length + ' regions · updated ' + new Date(state.now).toLocaleTimeString([], { hour12: false });
    $('#regions').replaceChildren(...state.regions.map((r) => regionCard(r, state)));
    if (!controls) { writeControls(state); controls = true; }
    if (state.canWrite) $('#write-result').replaceWith(writeResult(state));
    $('#requests').replaceWith(requestsPanel(state));
    const w = state.write;
    if (w && (w.state === 'writing' || w.state === 'spreading')) fast = Date.now() + 2000;
  } catch (error) {
    $('#meta').textContent = 'the dashboard does not answer: ' + error.message;
  }
  timer = setTimeout(refresh, Date.now() < fast ? 150 : 1000);
}
refresh();
`;

/** The page, whole. */
export function dashboardPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Regional · local deployment</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>Regional · local deployment</h1>
<div class="sub" id="meta">loading…</div>
</header>
<p class="notice" id="local-only"><strong>For local runs only.</strong> This page comes with
<code>regional demo --serve</code> and <code>regional dev --app</code>; it is no part of your app
or of Regional's middleware and never ships with them. It shows what your own monitoring would:
each instance's <code>/metrics</code> and readiness endpoint, and the headers of the requests it
sends itself.</p>
<main>
<div class="regions" id="regions"></div>
<section class="panel" id="write"></section>
<section class="panel" id="requests"></section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
