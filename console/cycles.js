// cycles: every cycle with its state, load error, webhook URLs (with a copy
// button), counts per state and a start/stop button.
import { el, sync, badge, say, errorBox } from './util.js';
import { get, call, errText, enc } from './api.js';
import { overview } from './metrics.js';

const STATES = ['running', 'waiting', 'completed', 'failed', 'expired', 'cancelled'];

export async function copyText(text, input) {
  let ok = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      ok = true;
    }
  } catch (e) { ok = false; }
  if (!ok && input) { // not a secure context, or no permission: the old way
    input.focus();
    input.select();
    try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
  }
  say(ok ? 'Copied ' + text : 'Could not copy; the URL is selected, press Ctrl+C', ok ? 'ok' : 'bad');
  return ok;
}

// "cycles/x.lua:5: message" -> {file, line, message}
export function splitLoadError(s) {
  const m = /^(.*?):(\d+): ([\s\S]*)$/.exec(s || '');
  return m ? { file: m[1], line: m[2], message: m[3] } : { file: '', line: '', message: s };
}

function webhookRow(c, h) {
  const id = 'url-' + c.name + '-' + h.step;
  const input = el('input', { id, class: 'url', type: 'text', readonly: true, value: h.url, 'aria-label': 'URL of webhook ' + h.step, 'data-fk': 'url:' + h.step });
  const button = el('button', { type: 'button', class: 'copy', 'data-fk': 'copy:' + h.step, 'data-url': h.url, 'aria-label': 'Copy URL of webhook ' + h.step },
    'Copy');
  button.addEventListener('click', async () => {
    if (await copyText(h.url, input)) {
      button.textContent = 'Copied';
      setTimeout(() => { button.textContent = 'Copy'; }, 2000);
    }
  });
  const flags = [];
  if (h.match) flags.push('match ' + h.match);
  if (h.ip_filtered) flags.push('IP filtered');
  if (h.synchronous) flags.push('synchronous');
  if (h.methods) flags.push(h.methods.join(' '));
  return el('li', { class: 'hook' },
    el('div', { class: 'hook-name' }, el('strong', {}, h.step), ' ', el('span', { class: 'muted', text: flags.join(' · ') })),
    el('div', { class: 'copy-row' }, input, button));
}

function card(c, reload) {
  const running = c.state === 'running';
  const act = el('button', { type: 'button', class: running ? 'danger' : 'primary', 'data-fk': 'toggle',
    disabled: !!(c.load_error && !c.webhooks.length) || undefined },
  running ? 'Stop' : 'Start');
  act.setAttribute('aria-label', (running ? 'Stop' : 'Start') + ' cycle ' + c.name);
  // Not disabled while busy: a disabled button drops the focus, and the
  // focus should stay on this button (as Start/Stop) after the change.
  let busy = false;
  act.addEventListener('click', async () => {
    if (busy) return;
    busy = true;
    act.setAttribute('aria-busy', 'true');
    const r = await call('/api/cycles/' + enc(c.name) + '/' + (running ? 'stop' : 'start'), { method: 'POST' });
    if (r.ok) say(`Cycle ${c.name} ${running ? 'stopped' : 'started'}`, 'ok');
    else say(errText(r), 'bad');
    busy = false;
    act.removeAttribute('aria-busy');
    await reload();
  });
  let err = null;
  if (c.load_error) {
    const p = splitLoadError(c.load_error);
    err = el('div', { class: 'load-error', role: 'note' },
      el('strong', {}, 'Load error'), ' ',
      p.file ? el('span', { class: 'where' }, p.file, p.line ? el('span', {}, ', line ' + p.line) : null) : null,
      el('pre', { text: p.message }),
      c.webhooks.length ? el('p', { class: 'muted', text: 'The previous version keeps serving.' }) : null);
  }
  const counts = el('ul', { class: 'counts', 'aria-label': 'Transactions of ' + c.name + ' by state' },
    STATES.filter((s) => s in (c.counts || {})).map((s) =>
      el('li', {}, el('a', { href: `#/transactions?cycle=${enc(c.name)}&state=${s}`, class: 'count s-' + s },
        el('span', { class: 'n', text: c.counts[s] }), ' ', s))));
  return el('article', { class: 'card cycle', 'aria-labelledby': 'cy-' + c.name },
    el('header', { class: 'card-head' },
      el('h2', { id: 'cy-' + c.name }, c.name), badge(c.state),
      el('span', { class: 'muted' }, 'connector ', el('a', { href: '#/connectors', text: c.connector })),
      el('span', { class: 'spacer' }), act),
    el('p', { class: 'muted file', text: c.file }),
    err, counts,
    c.webhooks.length ? el('ul', { class: 'hooks' }, c.webhooks.map((h) => webhookRow(c, h))) : null);
}

export function mount(main) {
  const chart = overview();
  const list = el('div', { class: 'cycles', 'aria-live': 'off' });
  const errs = el('div');
  main.append(el('div', { class: 'page-head' }, el('h1', {}, 'Cycles'), chart), errs, list);
  const reload = async () => {
    const data = await get('/api/cycles');
    errs.replaceChildren();
    if (!data.length) {
      errs.append(el('p', { class: 'muted', text: 'No cycles: put *.lua files in the cycles directory.' }));
    }
    sync(list, data, (c) => c.name, (c) => card(c, reload));
  };
  return { refresh: reload, showError: (m) => errs.replaceChildren(errorBox(m)) };
}
