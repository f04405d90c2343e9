// app: the router (hash routes, one view at a time) and the poller that
// refreshes the current view every two seconds while the tab is visible.
import { clear, parseHash, errorBox } from './util.js';
import * as cycles from './cycles.js';
import * as txlist from './transactions.js';
import * as tx from './transaction.js';
import * as waiting from './waiting.js';
import * as rejections from './rejections.js';
import * as connectors from './connectors.js';
import * as metrics from './metrics.js';

const VIEWS = { cycles, transactions: txlist, tx, waiting, rejections, connectors, metrics };
const POLL_MS = 2000;
let view = null;
let routeKey = '';
let busy = false;

function live(ok, text) {
  const l = document.getElementById('live');
  l.classList.toggle('ok', ok);
  l.classList.toggle('bad', !ok);
  document.getElementById('live-text').textContent = text;
}

async function refresh() {
  if (!view || !view.refresh || busy) return;
  busy = true;
  try {
    await view.refresh();
    live(true, 'live');
  } catch (e) {
    live(false, e.status === 0 ? 'offline' : 'error');
    if (view.showError) view.showError(e.message);
  } finally {
    busy = false;
  }
}

function route() {
  if (location.hash === '#main') return; // the skip link
  const r = parseHash();
  if (!r.parts.length) { location.replace('#/cycles'); return; }
  const name = r.parts[0];
  const key = r.parts.join('/');
  if (view && key === routeKey) { // only the query changed (filters)
    if (view.update) { view.update(r); refresh(); }
    return;
  }
  if (view && view.unmount) view.unmount();
  view = null;
  routeKey = key;
  for (const a of document.querySelectorAll('[data-nav]')) {
    const on = a.dataset.nav === name || (name === 'tx' && a.dataset.nav === 'transactions');
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const main = clear(document.getElementById('main'));
  const mod = VIEWS[name];
  if (!mod) { main.appendChild(errorBox('No such page: #/' + key)); return; }
  view = mod.mount(main, r);
  refresh();
}

window.addEventListener('hashchange', route);
document.getElementById('skip').addEventListener('click', (e) => {
  e.preventDefault();
  document.getElementById('main').focus();
});
setInterval(() => { if (document.visibilityState === 'visible') refresh(); }, POLL_MS);
document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') refresh(); });
metrics.startSampler();
route();
