// metrics: samples GET /metrics every two seconds (from the moment the
// console opens), turns counters into rates and histograms into latency, and
// draws them as small SVG charts.  No library.
import { el, errorBox } from './util.js';
import { call, errText } from './api.js';

const EVERY_MS = 2000;
const KEEP = 150; // five minutes of samples
const samples = [];
const listeners = new Set();
let lastError = '';
let lastText = '';

export function parse(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
    let l;
    while ((l = re.exec(m[2] || ''))) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1], labels, value: parseFloat(m[3]) });
  }
  return out;
}

function sum(series, name) {
  return series.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
}

// Histograms by family name: {buckets: [[le, cumulative count]], sum, count}
function histograms(series) {
  const h = {};
  for (const s of series) {
    const m = /^(.*)_(bucket|sum|count)$/.exec(s.name);
    if (!m || !/_seconds$/.test(m[1])) continue;
    const f = h[m[1]] || (h[m[1]] = { buckets: [], sum: 0, count: 0 });
    if (m[2] === 'bucket') f.buckets.push([s.labels.le === '+Inf' ? Infinity : parseFloat(s.labels.le), s.value]);
    else f[m[2]] += s.value;
  }
  for (const f of Object.values(h)) f.buckets.sort((a, b) => a[0] - b[0]);
  return h;
}

async function sample() {
  let r;
  try { r = await call('/metrics'); } catch (e) { lastError = e.message; notify(); return; }
  if (!r.ok) { lastError = errText(r); notify(); return; }
  lastError = '';
  lastText = r.text;
  const series = parse(r.text);
  samples.push({ t: Date.now(), series, requests: sum(series, 'hookwork_webhook_requests_total'),
    tasks: sum(series, 'hookwork_tasks_total'), outbound: sum(series, 'hookwork_outbound_requests_total'),
    hist: histograms(series) });
  if (samples.length > KEEP) samples.shift();
  notify();
}

function notify() {
  for (const f of [...listeners]) {
    if (f.node && !f.node.isConnected) listeners.delete(f); else f();
  }
}

function listen(node, f) { f.node = node; listeners.add(f); f(); }

// Every 2 s while a page with a chart is shown, every 10 s elsewhere (the
// charts then have history when opened), never while the tab is hidden.
export function startSampler() {
  let tick = 0;
  sample();
  setInterval(() => {
    tick++;
    if (document.visibilityState !== 'visible') return;
    const charted = /^#\/(metrics|cycles)?$/.test(location.hash.split('?')[0]) || location.hash === '';
    if (charted || tick % 5 === 0) sample();
  }, EVERY_MS);
}

// rate(key) -> [{t, v}] per second between neighbouring samples (a counter
// that went down means the engine restarted: that interval counts from 0).
function rate(key) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const d = b[key] - a[key];
    out.push({ t: b.t, v: (d < 0 ? b[key] : d) / ((b.t - a.t) / 1000) });
  }
  return out;
}

// Latency of one histogram family between samples: mean and p95, in ms.
function latency(family) {
  const mean = [], p95 = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1].hist[family], b = samples[i].hist[family];
    if (!a || !b) continue;
    const n = b.count - a.count;
    const t = samples[i].t;
    if (n <= 0) { mean.push({ t, v: null }); p95.push({ t, v: null }); continue; }
    mean.push({ t, v: 1000 * (b.sum - a.sum) / n });
    let le = null;
    for (let j = 0; j < b.buckets.length; j++) {
      const c = b.buckets[j][1] - ((a.buckets[j] || [0, 0])[1]);
      if (c >= 0.95 * n) { le = b.buckets[j][0]; break; }
    }
    p95.push({ t, v: le === null || le === Infinity ? null : 1000 * le });
  }
  return { mean, p95 };
}

// A line chart of one or more series [{label, cls, points}] over the last
// KEEP samples; points with v null are gaps.
export function chart(title, unit, lines, opts = {}) {
  const W = opts.width || 600, H = opts.height || 140, P = 4;
  const all = lines.flatMap((l) => l.points.filter((p) => p.v !== null).map((p) => p.v));
  const max = Math.max(opts.floor || 1, ...all) * 1.1; // all zero: lines at the bottom
  // The time axis spans what was sampled, at least a minute, at most KEEP.
  const now = Date.now();
  const first = samples.length ? samples[0].t : now;
  const t0 = Math.min(now - 60000, first);
  const x = (t) => P + (W - 2 * P) * (t - t0) / (now - t0);
  const y = (v) => H - P - (H - 2 * P) * v / max;
  const svg = el('svg:svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', class: 'chart', role: 'img', 'aria-label': title });
  for (const g of [0.25, 0.5, 0.75]) svg.append(el('svg:line', { x1: 0, x2: W, y1: y(max * g / 1.1), y2: y(max * g / 1.1), class: 'grid' }));
  for (const l of lines) {
    let seg = [];
    const flush = () => {
      if (seg.length === 1) seg.push([seg[0][0] + 1, seg[0][1]]);
      if (seg.length) svg.append(el('svg:polyline', { points: seg.map((p) => p.join(',')).join(' '), class: 'line ' + l.cls }));
      seg = [];
    };
    for (const p of l.points) {
      if (p.v === null) flush(); else seg.push([x(p.t).toFixed(1), y(p.v).toFixed(1)]);
    }
    flush();
  }
  const latest = lines.map((l) => {
    const p = [...l.points].reverse().find((q) => q.v !== null);
    return el('span', { class: 'legend ' + l.cls }, el('span', { class: 'swatch', 'aria-hidden': 'true' }), l.label + ': ' + (p ? fmt(p.v) + ' ' + unit : '—'));
  });
  return el('figure', { class: 'chart-box' + (opts.small ? ' small' : '') },
    el('figcaption', {}, el('strong', {}, title), ' ', el('span', { class: 'muted', text: 'max ' + fmt(all.length ? Math.max(...all) : 0) + ' ' + unit }), ' ', latest),
    svg);
}

function fmt(v) { return v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(1) : v.toFixed(2); }

function families() {
  const last = samples[samples.length - 1];
  return last ? Object.keys(last.hist).sort() : [];
}

// The small throughput chart on the cycles page.
export function overview() {
  const box = el('div', { class: 'overview' });
  listen(box, () => {
    box.replaceChildren(chart('Webhook requests', '/s', [{ label: 'now', cls: 'c1', points: rate('requests') }], { width: 300, height: 50, small: true }));
  });
  return box;
}

export function mount(main) {
  const info = el('div');
  const charts = el('div', { class: 'charts' });
  const table = el('div');
  const raw = el('pre', { class: 'code', tabindex: 0 });
  main.append(el('div', { class: 'page-head' }, el('h1', {}, 'Throughput and latency')),
    el('p', { class: 'muted', text: 'From the engine\'s /metrics, sampled every 2 s while this page is open (the last 5 minutes).' }),
    info, charts, table, el('details', {}, el('summary', {}, 'Raw metrics'), raw));
  listen(charts, () => {
    info.replaceChildren(lastError ? errorBox(lastError) : '');
    const out = [chart('Throughput', '/s', [
      { label: 'webhook requests', cls: 'c1', points: rate('requests') },
      { label: 'steps', cls: 'c2', points: rate('tasks') },
      { label: 'outbound calls', cls: 'c3', points: rate('outbound') }])];
    for (const f of families()) {
      const l = latency(f);
      out.push(chart('Latency: ' + f.replace(/^hookwork_/, '').replace(/_seconds$/, '').replace(/_/g, ' '), 'ms', [
        { label: 'mean', cls: 'c1', points: l.mean }, { label: 'p95 (bucket bound)', cls: 'c4', points: l.p95 }]));
    }
    charts.replaceChildren(...out);
    const last = samples[samples.length - 1];
    if (!last) return;
    const rows = last.series.filter((s) => s.name === 'hookwork_webhook_requests_total')
      .map((s) => el('tr', {}, el('td', { text: s.labels.cycle }), el('td', { text: s.labels.step }), el('td', { text: s.labels.status }), el('td', { class: 'num', text: String(s.value) })));
    table.replaceChildren(el('h2', {}, 'Webhook requests so far'), rows.length ? el('div', { class: 'scroll' }, el('table', { class: 'list' },
      el('caption', { class: 'sr-only', text: 'Webhook requests by cycle, step and status' }),
      el('thead', {}, el('tr', {}, ['cycle', 'step', 'status', 'requests'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows))) : el('p', { class: 'muted', text: 'None yet.' }));
    raw.textContent = lastText;
  });
  // The sampler draws this page; refresh only reports its health.
  return { refresh: async () => { if (lastError) throw new Error(lastError); } };
}
