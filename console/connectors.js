// connectors: each connector's settings, with its allowed IPs edited in
// place (PUT /api/connectors/NAME); the engine validates and its error is
// shown next to the field.
import { el, say, errorBox } from './util.js';
import { call, get, errText, enc } from './api.js';

function card(c) {
  const id = 'ips-' + c.name;
  const errId = id + '-error';
  const area = el('textarea', { id, name: 'allowed_ips', rows: Math.max(3, c.allowed_ips.length + 1), spellcheck: 'false',
    autocomplete: 'off', 'aria-describedby': errId + ' ' + id + '-help' });
  area.value = c.allowed_ips.join('\n');
  const err = el('p', { id: errId, class: 'field-error', 'aria-live': 'polite' });
  const source = el('span', { class: 'muted', text: c.allowed_ips_source === 'api' ? 'set here (overrides the file until it is saved again)' : c.file ? 'from ' + c.file : 'none set' });
  const save = el('button', { type: 'submit', class: 'primary' }, 'Save');
  const form = el('form', { class: 'ips', novalidate: true },
    el('label', { for: id }, 'Allowed IPs'),
    el('p', { id: id + '-help', class: 'muted small', text: 'One address or CIDR block a line (127.0.0.1, 10.1.0.0/16, ::1). Empty: ip_filtered webhooks reject everyone.' }),
    area, err, el('div', { class: 'actions' }, save, source));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const list = area.value.split(/[\n,]+/).map((s) => s.trim()).filter(Boolean);
    save.disabled = true;
    const r = await call('/api/connectors/' + enc(c.name), { method: 'PUT', json: { allowed_ips: list } });
    save.disabled = false;
    if (r.ok) {
      err.textContent = '';
      area.removeAttribute('aria-invalid');
      area.value = (r.data.allowed_ips || list).join('\n');
      source.textContent = 'set here (overrides the file until it is saved again)';
      say(`Allowed IPs of ${c.name} saved`, 'ok');
    } else {
      err.textContent = errText(r);
      area.setAttribute('aria-invalid', 'true');
      area.focus();
    }
  });
  const headers = (c.header_names || []).join(', ');
  return el('article', { class: 'card', 'aria-labelledby': 'cn-' + c.name },
    el('header', { class: 'card-head' }, el('h2', { id: 'cn-' + c.name }, c.name)),
    el('dl', { class: 'kv' },
      c.file ? [el('dt', { text: 'file' }), el('dd', { text: c.file })] : null,
      c.base_url ? [el('dt', { text: 'base URL' }), el('dd', { class: 'mono', text: c.base_url })] : null,
      headers ? [el('dt', { text: 'headers' }), el('dd', { text: headers + ' (values hidden)' })] : null),
    form);
}

export function mount(main) {
  const info = el('div');
  const list = el('div', { class: 'connectors' });
  main.append(el('div', { class: 'page-head' }, el('h1', {}, 'Connectors')), info, list);
  let loaded = false;
  async function refresh() {
    if (loaded) return; // no live reload here: it would overwrite an edit
    const data = await get('/api/connectors');
    loaded = true;
    info.replaceChildren(data.length ? '' : el('p', { class: 'muted', text: 'No connectors.' }));
    list.replaceChildren(...data.map(card));
  }
  return { refresh, showError: (m) => info.replaceChildren(errorBox(m)) };
}

