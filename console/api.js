// api: every call to the admin API goes through call().  It adds the admin
// token when there is one; on 401 it asks for the token once (one prompt
// shared by all calls waiting), keeps it in sessionStorage (this tab only)
// and tries again.
const KEY = 'hookwork.token';
let token = sessionStorage.getItem(KEY) || '';
let prompt = null;

export class ApiError extends Error {
  constructor(status, message, data) { super(message); this.status = status; this.data = data; }
}

function askToken(wrong) {
  if (prompt) return prompt;
  prompt = new Promise((resolve) => {
    const dlg = document.getElementById('token-dialog');
    const form = document.getElementById('token-form');
    const input = document.getElementById('token-input');
    const err = document.getElementById('token-error');
    err.textContent = wrong ? 'The engine did not accept that token.' : '';
    input.setAttribute('aria-invalid', wrong ? 'true' : 'false');
    input.value = '';
    const onCancel = (e) => e.preventDefault(); // nothing works without it
    const onSubmit = (e) => {
      e.preventDefault();
      const v = input.value.trim();
      if (!v) { err.textContent = 'Enter the token.'; input.focus(); return; }
      token = v;
      sessionStorage.setItem(KEY, v);
      form.removeEventListener('submit', onSubmit);
      dlg.removeEventListener('cancel', onCancel);
      dlg.close();
      prompt = null;
      resolve();
    };
    form.addEventListener('submit', onSubmit);
    dlg.addEventListener('cancel', onCancel);
    dlg.showModal();
    input.focus();
  });
  return prompt;
}

// call(path, {method, json}) -> {status, data, text}; throws ApiError when
// the engine cannot be reached.  Statuses other than 401 are the caller's.
export async function call(path, opts = {}) {
  for (let tries = 0; ; tries++) {
    const headers = {};
    let body;
    if (token) headers.Authorization = 'Bearer ' + token;
    if (opts.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    let r;
    const sent = token;
    try {
      r = await fetch(path, { method: opts.method || 'GET', headers, body, cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, 'the engine cannot be reached (' + e.message + ')');
    }
    if (r.status === 401) {
      // Another call may have got a token while this one was on its way.
      if (token && token !== sent) continue;
      await askToken(!!sent);
      continue;
    }
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    return { status: r.status, ok: r.ok, data, text };
  }
}

// get(path) -> data of a 2xx answer; anything else throws ApiError with the
// engine's own error message.
export async function get(path) {
  const r = await call(path);
  if (!r.ok) throw new ApiError(r.status, errText(r), r.data);
  return r.data;
}

export function errText(r) {
  if (r.data && typeof r.data.error === 'string') return r.data.error;
  return 'HTTP ' + r.status + (r.text ? ': ' + r.text.slice(0, 200) : '');
}

// A route the engine does not have answers 404 {"error":"not found"}.
export function missingRoute(r) {
  return r.status === 404 && r.data && r.data.error === 'not found';
}

export function enc(s) { return encodeURIComponent(s); }
