// waiting: the transactions parked at mid-cycle webhooks, grouped by the
// webhook they wait at (with its URL and match field).
import { el, sync, ago, fmtTime, errorBox } from './util.js';
import { call, get, errText, enc } from './api.js';

const LIMIT = 1000;

function group(g) {
  const rows = g.list.map((t) => el('tr', {},
    el('td', {}, el('a', { href: '#/tx/' + enc(t.id), 'aria-label': 'Transaction ' + t.id }, t.id)),
    el('td', { class: 'mono', text: t.match === null || t.match === undefined ? '' : String(t.match) }),
    el('td', { title: fmtTime(t.updated) }, ago(t.updated)),
    el('td', {}, t.runs === undefined ? '' : String(t.runs))));
  const id = 'w-' + g.cycle + '-' + g.step;
  return el('section', { class: 'card', 'aria-labelledby': id },
    el('header', { class: 'card-head' },
      el('h2', { id }, g.cycle, ' › ', g.step),
      el('span', { class: 'muted', text: g.list.length + (g.list.length === 1 ? ' transaction' : ' transactions') + (g.match ? ' · matched on ' + g.match : '') }),
      el('span', { class: 'spacer' }),
      el('a', { href: `#/transactions?cycle=${enc(g.cycle)}&state=waiting&step=${enc(g.step)}` }, 'in the list')),
    g.url ? el('p', { class: 'mono muted small', text: g.url }) : null,
    el('div', { class: 'scroll' }, el('table', { class: 'list' },
      el('caption', { class: 'sr-only', text: 'Waiting at ' + g.step }),
      el('thead', {}, el('tr', {}, ['id', 'match value', 'parked or resumed', 'runs'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows))));
}

export function mount(main) {
  const info = el('div');
  const groups = el('div');
  main.append(el('div', { class: 'page-head' }, el('h1', {}, 'Waiting transactions')), info, groups);
  async function refresh() {
    const [r, cycles] = await Promise.all([call(`/api/transactions?state=waiting&limit=${LIMIT}&page=1`), get('/api/cycles')]);
    if (!r.ok) { info.replaceChildren(errorBox(errText(r))); return; }
    const list = Array.isArray(r.data) ? r.data : (r.data.transactions || []);
    const hooks = new Map();
    for (const c of cycles) for (const h of c.webhooks) hooks.set(c.name + '\0' + h.step, h);
    const by = new Map();
    for (const t of list) {
      const k = t.cycle + '\0' + t.step;
      if (!by.has(k)) {
        const h = hooks.get(k) || {};
        by.set(k, { cycle: t.cycle, step: t.step, url: h.url, match: h.match, list: [] });
      }
      by.get(k).list.push(t);
    }
    const more = Array.isArray(r.data) ? list.length >= LIMIT : !!r.data.next;
    info.replaceChildren(list.length ? (more ? el('p', { class: 'muted', text: `Showing the newest ${LIMIT}.` }) : '')
      : el('p', { class: 'muted', text: 'No transaction is waiting.' }));
    sync(groups, [...by.values()], (g) => g.cycle + '\0' + g.step, group);
  }
  return { refresh, showError: (m) => info.replaceChildren(errorBox(m)) };
}
