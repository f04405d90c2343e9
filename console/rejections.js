// rejections: the most recent rejected webhook requests with their reasons
// (GET /api/rejections, from the operations API).
import { el, sync, fmtTime, ago, badge, errorBox } from './util.js';
import { call, errText, missingRoute } from './api.js';

export function mount(main) {
  const info = el('div');
  const body = el('tbody');
  const wrap = el('div', { class: 'scroll' }, el('table', { class: 'list' },
    el('caption', { class: 'sr-only', text: 'Rejected requests, newest first' }),
    el('thead', {}, el('tr', {}, ['time', 'cycle', 'step', 'status', 'reason', 'client'].map((h) => el('th', { scope: 'col', text: h })))),
    body));
  main.append(el('div', { class: 'page-head' }, el('h1', {}, 'Recent rejections')), info, wrap);
  let gone = false;
  async function refresh() {
    if (gone) return;
    const r = await call('/api/rejections?limit=200');
    if (missingRoute(r)) {
      gone = true;
      wrap.hidden = true;
      info.replaceChildren(el('p', { class: 'muted', text: 'This engine does not keep rejections (no /api/rejections).' }));
      return;
    }
    if (!r.ok) { info.replaceChildren(errorBox(errText(r))); return; }
    const list = Array.isArray(r.data) ? r.data : (r.data.rejections || []);
    info.replaceChildren(list.length ? '' : el('p', { class: 'muted', text: 'No request was rejected recently.' }));
    wrap.hidden = !list.length;
    sync(body, list.map((x, i) => Object.assign({ _i: list.length - i }, x)), (x) => x.time + '|' + x._i, (x) => el('tr', {},
      el('td', { title: fmtTime(x.time) }, ago(x.time)),
      el('td', { text: x.cycle || '' }), el('td', { text: x.step || '' }),
      el('td', {}, badge(String(x.status))),
      el('td', { class: 'reason', text: x.reason || '' }),
      el('td', { class: 'mono', text: x.ip || '' })));
  }
  return { refresh, showError: (m) => info.replaceChildren(errorBox(m)) };
}
