// util: DOM building, formatting and the status line.  No framework: el()
// builds elements from a tag, attributes and children; text is always set as
// text (never as HTML), so data from the engine cannot inject markup.

export function el(tag, attrs, ...children) {
  const ns = tag.startsWith('svg:') ? 'http://www.w3.org/2000/svg' : null;
  const e = ns ? document.createElementNS(ns, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.setAttribute('class', v);
    else if (k === 'text') e.textContent = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(e, c);
    else if (c instanceof Node) e.appendChild(c);
    else e.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

// Replaces the children of `parent` by one element per item, keeping the
// elements whose item did not change (so focus and selection survive live
// updates).  key(item) names an item; render(item) builds its element.  A
// replaced element that held the focus hands it to the element with the same
// data-fk in its replacement.
export function sync(parent, items, key, render) {
  const old = new Map();
  for (const c of Array.from(parent.children)) if (c.dataset.key !== undefined) old.set(c.dataset.key, c);
  let prev = null;
  for (const item of items) {
    const k = String(key(item));
    const sig = JSON.stringify(item);
    let node = old.get(k);
    if (node && node.dataset.sig === sig) {
      old.delete(k);
    } else {
      const fresh = render(item);
      fresh.dataset.key = k;
      fresh.dataset.sig = sig;
      if (node) {
        old.delete(k);
        const focused = node.contains(document.activeElement) ? document.activeElement : null;
        node.replaceWith(fresh);
        if (focused && focused.dataset.fk) {
          const again = fresh.querySelector('[data-fk="' + CSS.escape(focused.dataset.fk) + '"]');
          if (again) again.focus();
        }
      }
      node = fresh;
    }
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (want !== node) parent.insertBefore(node, want);
    prev = node;
  }
  for (const n of old.values()) n.remove();
  for (const c of Array.from(parent.children)) if (c.dataset.key === undefined) c.remove();
}

export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function ago(iso) {
  const t = Date.parse(iso);
  if (isNaN(t)) return '';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 0) return 'in ' + dur(-s * 1000);
  if (s < 5) return 'just now';
  if (s < 60) return s + ' s ago';
  return dur(s * 1000) + ' ago';
}

export function dur(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return '';
  if (ms < 1000) return Math.round(ms) + ' ms';
  const s = ms / 1000;
  if (s < 60) return (s < 10 ? s.toFixed(2) : s.toFixed(1)) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min ' + Math.round(s % 60) + ' s';
  const h = Math.floor(m / 60);
  if (h < 48) return h + ' h ' + (m % 60) + ' min';
  return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
}

export function badge(state) {
  return el('span', { class: 'badge s-' + String(state).replace(/[^a-z]/g, ''), text: state });
}

export function pretty(v) {
  try { return JSON.stringify(v, null, 2); } catch (e) { return String(v); }
}

let statusTimer = null;
// The polite live region under the page: what a button just did.
export function say(msg, kind) {
  const s = document.getElementById('status');
  s.className = 'status show' + (kind ? ' ' + kind : '');
  s.textContent = msg;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { s.className = 'status'; }, 6000);
}

export function errorBox(msg) { return el('p', { class: 'error-box', role: 'alert', text: msg }); }

// Hash routes: "#/tx/12?x=1" -> { parts: ["tx", "12"], query: URLSearchParams }
export function parseHash() {
  const h = location.hash.startsWith('#/') ? location.hash.slice(2) : '';
  const [p, q] = h.split('?');
  return { parts: p.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(q || '') };
}
