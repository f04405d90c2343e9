// transaction: one transaction -- summary, links to linked and replayed
// transactions, retry/replay/cancel, its data, the original request(s) and
// its history as a timeline per run.  Refreshed by the poller (a failed one
// may be retried from elsewhere); redrawn only when the answer changed.
import { el, badge, fmtTime, ago, dur, pretty, say, errorBox } from './util.js';
import { call, errText, missingRoute, enc } from './api.js';

const missing = new Set(); // actions this engine does not have

function txLink(id, cycle) {
  return el('a', { href: '#/tx/' + enc(id) }, (cycle ? cycle + ' ' : '') + '#' + id);
}

// Links found in the transaction: where it came from, what it started.
function links(t) {
  const items = [];
  if (t.linked_from) {
    const id = t.linked_from.transaction || t.linked_from.id;
    items.push(el('li', {}, 'linked from ', txLink(id, t.linked_from.cycle)));
  }
  if (t.replay_of) items.push(el('li', {}, 'replay of ', txLink(t.replay_of.transaction || t.replay_of.id || t.replay_of)));
  for (const r of t.replays || []) items.push(el('li', {}, 'replayed as ', txLink(r.transaction || r.id || r)));
  const seen = new Set();
  for (const h of t.history || []) {
    const m = /linked to (\S+) transaction (\d+)/.exec(h.note || '');
    if (m && !seen.has(m[2])) { seen.add(m[2]); items.push(el('li', {}, 'linked to ', txLink(m[2], m[1]), ' by step ' + h.step)); }
  }
  for (const l of t.links || []) {
    const id = l.transaction || l.id;
    if (id && !seen.has(String(id))) { seen.add(String(id)); items.push(el('li', {}, 'linked to ', txLink(id, l.cycle))); }
  }
  return items.length ? el('section', { 'aria-labelledby': 'h-links' }, el('h2', { id: 'h-links' }, 'Linked transactions'), el('ul', { class: 'links' }, items)) : null;
}

function dl(pairs) {
  return el('dl', { class: 'kv' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => [el('dt', { text: k }), el('dd', {}, v)]));
}

function requestView(req, title, id) {
  if (!req) return null;
  const headers = req.headers || {};
  const hrows = Object.keys(headers).sort().map((k) => el('tr', {}, el('th', { scope: 'row', text: k }), el('td', { class: 'mono', text: String(headers[k]) })));
  let bodyText = req.body === undefined || req.body === null ? '' : String(req.body);
  if (req.body_encoding !== 'base64') {
    try { bodyText = pretty(JSON.parse(bodyText)); } catch (e) { /* not JSON: as sent */ }
  }
  const q = req.query && typeof req.query === 'object' ? new URLSearchParams(req.query).toString() : (req.query || '');
  return el('details', { class: 'request', open: id === 0 || undefined },
    el('summary', {}, el('strong', {}, title), ' ', el('span', { class: 'mono' }, (req.method || '') + ' ' + (req.path || '') + (q ? '?' + q : '')),
      ' ', el('span', { class: 'muted' }, [req.ip ? 'from ' + req.ip : '', req.received ? ' at ' + fmtTime(req.received) : ''].join(''))),
    hrows.length ? el('div', { class: 'scroll' }, el('table', { class: 'headers' }, el('caption', { class: 'sr-only', text: 'Headers' }), el('tbody', {}, hrows))) : null,
    el('p', { class: 'muted', text: 'Body' + (req.body_encoding === 'base64' ? ' (base64)' : '') }),
    el('pre', { class: 'code', tabindex: 0, text: bodyText || '(empty)' }));
}

// One list per run; each entry a step with its duration drawn as a bar
// across the run's time span.
function timeline(history) {
  const runs = new Map();
  for (const h of history || []) {
    if (!runs.has(h.run)) runs.set(h.run, []);
    runs.get(h.run).push(h);
  }
  const out = [];
  for (const [run, entries] of runs) {
    const t0 = Math.min(...entries.map((e) => Date.parse(e.started)));
    const t1 = Math.max(...entries.map((e) => Date.parse(e.ended)));
    const span = Math.max(t1 - t0, 1);
    const failed = entries.some((e) => e.status === 'failed');
    out.push(el('section', { class: 'run' + (failed ? ' run-failed' : ''), 'aria-label': 'Run ' + run },
      el('h3', {}, 'Run ' + run, ' ', el('span', { class: 'muted' }, fmtTime(entries[0].started) + ' · ' + dur(t1 - t0))),
      el('ol', { class: 'timeline' }, entries.map((e) => {
        const s = Date.parse(e.started), d = Date.parse(e.ended) - s;
        const bar = el('span', { class: 'bar s-' + e.status, 'aria-hidden': 'true' });
        bar.style.marginLeft = (100 * (s - t0) / span).toFixed(2) + '%';
        bar.style.width = Math.max(100 * d / span, 0.8).toFixed(2) + '%';
        const outbound = /^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /.test(e.note || '') || /attempt \d+ of /.test(e.note || '');
        return el('li', { class: 'entry s-' + e.status },
          el('div', { class: 'entry-head' }, el('span', { class: 'step' }, e.step), ' ', badge(e.status), ' ',
            el('span', { class: 'muted', title: fmtTime(e.started) + ' → ' + fmtTime(e.ended) }, dur(d))),
          el('div', { class: 'track' }, bar),
          e.error ? el('pre', { class: 'err', text: e.error }) : null,
          e.note ? el('p', { class: outbound ? 'note outbound' : 'note' }, outbound ? '↗ ' : '', e.note) : null,
          (e.calls || []).map((c) => el('p', { class: 'note outbound' }, '↗ ' + [c.method, c.url, c.status, c.ms !== undefined ? dur(c.ms) : ''].filter(Boolean).join(' '))));
      }))));
  }
  return out.length ? out : [el('p', { class: 'muted', text: 'No steps ran yet.' })];
}

export function mount(main, route) {
  const id = route.parts[1];
  const head = el('div', { class: 'page-head' }, el('h1', {}, 'Transaction ', el('span', { class: 'mono' }, '#' + id)));
  const actions = el('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' });
  const body = el('div');
  const errs = el('div');
  main.append(head, errs, actions, body);
  let last = ''; // the answer last drawn: an unchanged one is not redrawn

  async function act(name, opts, done) {
    const r = await call('/api/transactions/' + enc(id) + '/' + name, Object.assign({ method: 'POST' }, opts));
    if (missingRoute(r)) {
      missing.add(name);
      say('This engine has no ' + name + ' route.', 'bad');
    } else if (!r.ok) {
      say(errText(r), 'bad');
    } else {
      done(r.data || {});
    }
    last = '';
    await refresh();
  }

  function buttons(t) {
    const canOps = 'request' in t || 'requests' in t; // stored requests come with the operations API
    const out = [];
    if (canOps && t.state === 'failed' && !missing.has('retry')) {
      const steps = [...new Set((t.history || []).map((h) => h.step))];
      const from = el('select', { id: 'retry-from', 'aria-label': 'Retry from step' },
        el('option', { value: '' }, 'from the failed step'), steps.map((s) => el('option', { value: s }, 'from ' + s)));
      out.push(el('span', { class: 'group' }, el('button', { type: 'button', class: 'primary', id: 'retry', onclick: () =>
        act('retry', from.value ? { json: { from: from.value } } : {}, (d) => say('Retrying: run ' + (d.run || ''), 'ok')) }, 'Retry'), from));
    }
    if (canOps && t.request && !missing.has('replay')) {
      out.push(el('button', { type: 'button', id: 'replay', onclick: () =>
        act('replay', {}, (d) => {
          const nid = d.transaction || d.id;
          say('Replayed as transaction ' + nid, 'ok');
          if (nid) location.hash = '#/tx/' + enc(nid);
        }) }, 'Replay'));
    }
    if (canOps && (t.state === 'waiting' || t.state === 'running') && !missing.has('cancel')) {
      const cancel = el('button', { type: 'button', class: 'danger', id: 'cancel' }, 'Cancel…');
      const confirm = el('span', { class: 'group', hidden: true },
        el('span', { text: 'Cancel this transaction?' }),
        el('button', { type: 'button', class: 'danger', id: 'cancel-yes', onclick: () => act('cancel', {}, () => say('Cancelled', 'ok')) }, 'Yes, cancel'),
        el('button', { type: 'button', id: 'cancel-no', onclick: () => { confirm.hidden = true; cancel.hidden = false; cancel.focus(); } }, 'Keep'));
      cancel.addEventListener('click', () => { cancel.hidden = true; confirm.hidden = false; confirm.querySelector('#cancel-no').focus(); });
      out.push(cancel, confirm);
    }
    return out;
  }

  async function refresh() {
    const r = await call('/api/transactions/' + enc(id));
    if (!r.ok) { errs.replaceChildren(errorBox(errText(r))); return; }
    errs.replaceChildren();
    if (r.text === last) return;
    last = r.text;
    const t = r.data;
    if (actions.contains(document.activeElement) && document.activeElement.tagName === 'SELECT') return;
    actions.replaceChildren(...buttons(t));
    const reqs = [];
    if (t.request) reqs.push(requestView(t.request, 'Original request', 0));
    (t.requests || []).forEach((q, i) => reqs.push(requestView(q, 'Resume ' + (i + 1), i + 1)));
    body.replaceChildren(...[
      el('section', { class: 'card', 'aria-label': 'Summary' }, el('div', { class: 'card-head' }, badge(t.state),
        el('a', { href: '#/transactions?cycle=' + enc(t.cycle) }, t.cycle), el('span', { class: 'muted', text: 'at step ' + (t.step || '') })),
      dl([['match value', t.match === null || t.match === undefined ? null : String(t.match)],
        ['runs', t.runs], ['created', t.created && fmtTime(t.created) + ' (' + ago(t.created) + ')'],
        ['updated', t.updated && fmtTime(t.updated) + ' (' + ago(t.updated) + ')'],
        ['expires', t.expires && fmtTime(t.expires)], ['retry at', t.retry_at && fmtTime(t.retry_at)],
        ['error', t.error ? el('span', { class: 'err-text', text: t.error }) : null]])),
      links(t),
      el('section', { 'aria-labelledby': 'h-hist' }, el('h2', { id: 'h-hist' }, 'History'), timeline(t.history)),
      el('section', { 'aria-labelledby': 'h-data' }, el('h2', { id: 'h-data' }, 'Data'), el('pre', { class: 'code', tabindex: 0, text: pretty(t.data) })),
      reqs.length ? el('section', { 'aria-labelledby': 'h-req' }, el('h2', { id: 'h-req' }, t.requests && t.requests.length ? 'Requests' : 'Request'), reqs) : null].filter(Boolean));
  }
  return { refresh, showError: (m) => errs.replaceChildren(errorBox(m)) };
}
