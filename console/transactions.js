// transactions: the list, filtered by cycle, state, step and match value,
// searched in data (q=PATH=VALUE), paged with the engine's cursor and kept
// live by the poller.  An engine without paging (the answer is a plain
// array) is filtered here by step and match instead.
import { el, sync, badge, ago, fmtTime, errorBox, say } from './util.js';
import { call, get, errText, enc, missingRoute } from './api.js';

const STATES = ['running', 'waiting', 'completed', 'failed', 'expired', 'cancelled'];
const PAGE = 50;

export function row(t) {
  return el('tr', {},
    el('td', {}, el('a', { href: '#/tx/' + enc(t.id), 'data-fk': 'open', 'aria-label': 'Transaction ' + t.id }, t.id)),
    el('td', {}, t.cycle),
    el('td', {}, badge(t.state)),
    el('td', {}, t.step || ''),
    el('td', { class: 'mono' }, t.match === undefined || t.match === null ? '' : String(t.match)),
    el('td', { title: fmtTime(t.created) }, ago(t.created)),
    el('td', { title: fmtTime(t.updated) }, ago(t.updated)));
}

export function table(caption) {
  const body = el('tbody');
  const t = el('table', { class: 'list' },
    el('caption', { class: 'sr-only', text: caption }),
    el('thead', {}, el('tr', {}, ['id', 'cycle', 'state', 'step', 'match', 'created', 'updated'].map((h) => el('th', { scope: 'col', text: h })))),
    body);
  return { wrap: el('div', { class: 'scroll' }, t), body };
}

function field(label, input) {
  return el('label', { class: 'field' }, el('span', { text: label }), input);
}

export function mount(main, route) {
  let query = route.query;
  let cursors = [null]; // cursors[i]: the cursor of page i (null: newest)
  let page = 0;
  let next = null;
  const cycleSel = el('select', { name: 'cycle' }, el('option', { value: '' }, 'all cycles'));
  const stateSel = el('select', { name: 'state' }, el('option', { value: '' }, 'all states'),
    STATES.map((s) => el('option', { value: s }, s)));
  const step = el('input', { name: 'step', type: 'text', placeholder: 'step name', autocomplete: 'off' });
  const match = el('input', { name: 'match', type: 'text', placeholder: 'e.g. A1', autocomplete: 'off' });
  const q = el('input', { name: 'q', type: 'search', placeholder: 'customer.email=a@b.c', autocomplete: 'off' });
  const form = el('form', { class: 'filters', role: 'search', 'aria-label': 'Filter transactions' },
    field('Cycle', cycleSel), field('State', stateSel), field('Step', step),
    field('Match value', match), field('Search in data (PATH=VALUE)', q),
    el('div', { class: 'field buttons' }, el('button', { type: 'submit', class: 'primary' }, 'Apply'),
      el('button', { type: 'button', id: 'clear-filters', onclick: () => { form.reset(); apply(); } }, 'Clear')));
  const note = el('div');
  const { wrap, body } = table('Transactions, newest first');
  const empty = el('p', { class: 'muted', hidden: true, text: 'No transactions match.' });
  const prevB = el('button', { type: 'button', disabled: true }, 'Newer');
  const nextB = el('button', { type: 'button', disabled: true }, 'Older');
  const pageInfo = el('span', { class: 'muted' });
  const pager = el('nav', { class: 'pager', 'aria-label': 'Pages' }, prevB, pageInfo, nextB);
  // "Retry these": shown while the filter is state=failed on an engine with
  // the operations API (POST /api/transactions/retry?cycle=&step=).
  const bulk = el('div', { class: 'actions', hidden: true });
  let bulkMissing = false;
  main.append(el('div', { class: 'page-head' }, el('h1', {}, 'Transactions')), form, bulk, note, wrap, empty, pager);

  function drawBulk(paged) {
    const show = paged && !bulkMissing && query.get('state') === 'failed' && !query.get('match') && !query.get('q');
    if (!show) { bulk.hidden = true; bulk.replaceChildren(); return; }
    if (!bulk.hidden) return;
    const scope = [query.get('cycle') && 'of ' + query.get('cycle'), query.get('step') && 'at ' + query.get('step')].filter(Boolean).join(' ');
    const ask = el('button', { type: 'button', id: 'retry-all' }, 'Retry all failed' + (scope ? ' ' + scope : '') + '…');
    const sure = el('span', { class: 'group', hidden: true }, el('span', { text: 'Run every failed transaction ' + (scope ? scope + ' ' : '') + 'again?' }),
      el('button', { type: 'button', class: 'primary', id: 'retry-all-yes', onclick: async () => {
        const p = new URLSearchParams();
        for (const k of ['cycle', 'step']) if (query.get(k)) p.set(k, query.get(k));
        const r = await call('/api/transactions/retry' + (p.toString() ? '?' + p : ''), { method: 'POST' });
        if (missingRoute(r)) { bulkMissing = true; say('This engine has no bulk retry.', 'bad'); }
        else if (!r.ok) say(errText(r), 'bad');
        else say('Retried ' + (r.data && r.data.retried) + ' transactions', 'ok');
        bulk.hidden = true;
        drawBulk(true);
        refresh();
      } }, 'Yes, retry'),
      el('button', { type: 'button', id: 'retry-all-no', onclick: () => { sure.hidden = true; ask.hidden = false; ask.focus(); } }, 'No'));
    ask.addEventListener('click', () => { ask.hidden = true; sure.hidden = false; sure.querySelector('#retry-all-yes').focus(); });
    bulk.replaceChildren(ask, sure);
    bulk.hidden = false;
  }

  function fill() {
    cycleSel.value = query.get('cycle') || '';
    stateSel.value = query.get('state') || '';
    step.value = query.get('step') || '';
    match.value = query.get('match') || '';
    q.value = query.get('q') || '';
  }
  function apply() {
    const p = new URLSearchParams();
    for (const [k, v] of [['cycle', cycleSel.value], ['state', stateSel.value], ['step', step.value.trim()],
      ['match', match.value.trim()], ['q', q.value.trim()]]) if (v) p.set(k, v);
    const h = '#/transactions' + (p.toString() ? '?' + p : '');
    if (h !== location.hash) location.hash = h; // route() calls update()
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); apply(); });
  cycleSel.addEventListener('change', apply);
  stateSel.addEventListener('change', apply);
  prevB.addEventListener('click', () => { if (page > 0) { page--; refresh(); } });
  nextB.addEventListener('click', () => {
    if (next) { cursors[page + 1] = next; page++; refresh(); }
  });

  (async () => { // cycle names for the filter
    try {
      const cs = await get('/api/cycles');
      for (const c of cs) cycleSel.append(el('option', { value: c.name }, c.name));
      cycleSel.value = query.get('cycle') || '';
    } catch (e) { /* the list itself shows the error */ }
  })();
  fill();

  async function refresh() {
    const p = new URLSearchParams();
    for (const k of ['cycle', 'state', 'step', 'match', 'q']) if (query.get(k)) p.set(k, query.get(k));
    p.set('page', '1');
    p.set('limit', String(PAGE));
    if (cursors[page]) p.set('cursor', cursors[page]);
    const r = await call('/api/transactions?' + p);
    if (!r.ok) {
      note.replaceChildren(errorBox(errText(r)));
      sync(body, [], (t) => t.id, row);
      return;
    }
    let list;
    note.replaceChildren();
    if (Array.isArray(r.data)) { // an engine without paging or these filters
      list = r.data;
      if (query.get('step')) list = list.filter((t) => t.step === query.get('step'));
      if (query.get('match')) list = list.filter((t) => String(t.match) === query.get('match'));
      if (query.get('q')) note.replaceChildren(errorBox('This engine cannot search in data (no q= support).'));
      next = null;
      drawBulk(false);
    } else {
      list = r.data.transactions || [];
      next = r.data.next || null;
      drawBulk(true);
    }
    sync(body, list, (t) => t.id, row);
    empty.hidden = list.length > 0;
    prevB.disabled = page === 0;
    nextB.disabled = !next;
    pageInfo.textContent = 'page ' + (page + 1);
  }
  return {
    refresh,
    update(r) { query = r.query; cursors = [null]; page = 0; fill(); bulk.hidden = true; bulk.replaceChildren(); },
    showError: (m) => note.replaceChildren(errorBox(m)),
  };
}

