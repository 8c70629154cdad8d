// Shared pieces of the management UI: the API client, element building,
// number formatting, live tables, charts and dialogs. No framework: pages
// build their DOM once and then only change text, so refreshes never move
// the layout or steal keyboard focus.

export const state = {
  auth: sessionStorage.getItem('warren.auth') || '',
  user: null, // {name, tags}
  vhost: localStorage.getItem('warren.vhost') || '',
  vhosts: [],
};

export function hasTag(...tags) {
  return !!state.user && tags.some((t) => state.user.tags.includes(t));
}
export const isAdmin = () => hasTag('administrator');

export class ApiError extends Error {
  constructor(status, reason) {
    super(reason || `HTTP ${status}`);
    this.status = status;
  }
}

// api calls the management HTTP API as the logged-in user.
export async function api(path, { method = 'GET', body, signal, headers: extra } = {}) {
  const headers = { 'X-Requested-With': 'XMLHttpRequest', Accept: 'application/json', ...extra };
  if (state.auth) headers.Authorization = 'Basic ' + state.auth;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch('api' + path, {
    method, headers, signal, cache: 'no-store',
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  if (resp.status === 401 && path !== '/whoami') {
    document.dispatchEvent(new CustomEvent('warren:logout', { detail: 'Your session has ended: log in again.' }));
  }
  if (!resp.ok) {
    let reason = '';
    try { const j = await resp.json(); reason = j.reason || j.error; } catch { /* not JSON */ }
    throw new ApiError(resp.status, reason || resp.statusText);
  }
  if (resp.status === 204 || resp.status === 201) return null;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

export const enc = encodeURIComponent;
export const vpath = (vhost, name) => '/' + enc(vhost) + (name === undefined ? '' : '/' + enc(name));

// h builds an element: h('a', {href: '#'}, 'text', child...). Attributes
// starting with "on" add listeners; class, hidden, value and checked are
// properties.
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'style') el.style.cssText = v; // CSSOM: allowed by the page's CSP, unlike a style attribute
      else if (k === 'value' || k === 'checked' || k === 'hidden' || k === 'disabled' || k === 'selected') el[k] = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

// setText changes a node's text only when it differs.
export function setText(el, text) {
  text = text === undefined || text === null ? '' : String(text);
  if (el.textContent !== text) el.textContent = text;
}

// ---- formatting ----

const nf = new Intl.NumberFormat('en-US');
export function num(n) {
  if (n === undefined || n === null || n === '') return '';
  return nf.format(n);
}
export function rate(r) {
  if (r === undefined || r === null) return '';
  const a = Math.abs(r);
  if (a === 0) return '0/s';
  if (a >= 1e6) return (r / 1e6).toFixed(2) + 'M/s';
  if (a >= 10000) return (r / 1000).toFixed(1) + 'k/s';
  if (a >= 100) return nf.format(Math.round(r)) + '/s';
  return r.toFixed(1) + '/s';
}
export function bytes(b) {
  if (b === undefined || b === null) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(b) >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i === 0 ? String(b) : b.toFixed(b < 10 ? 2 : 1)) + ' ' + u[i];
}
export function seconds(s) {
  if (s === undefined || s === null) return '';
  if (s === 0) return '0';
  if (s < 1e-3) return (s * 1e6).toFixed(0) + ' µs';
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + ' ms';
  return s.toFixed(2) + ' s';
}
export function duration(ms) {
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${s}s`;
  return `${s}s`;
}
export function time(ms) {
  return ms ? new Date(ms).toLocaleString() : '';
}
export function get(o, path) {
  for (const k of path.split('.')) {
    if (o === undefined || o === null) return undefined;
    o = o[k];
  }
  return o;
}
export function args(a) {
  if (!a || !Object.keys(a).length) return '';
  return Object.entries(a).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ');
}

// ---- live tables ----

// Table is a table whose rows are keyed: update() changes only the cells
// whose text changed, keeps rows (and their buttons and focus) in place,
// and the fixed column widths stop numbers from pushing columns about.
// A column: {key, label, width, num, sort (API sort key, or false),
// text(row), href(row), cell(row) (built once per row), title(row)}.
export class Table {
  constructor(columns, { rowKey, sortKey = '', sortRev = false, onSort, empty = 'Nothing here yet.', label } = {}) {
    this.columns = columns;
    this.rowKey = rowKey;
    this.onSort = onSort;
    this.empty = empty;
    this.rows = new Map();
    this.sortKey = sortKey;
    this.sortRev = sortRev;
    this.tbody = h('tbody');
    const cols = h('colgroup', null, columns.map((c) => h('col', { style: c.width ? `width:${c.width}` : null })));
    this.ths = columns.map((c) => {
      const th = h('th', { scope: 'col', class: c.num ? 'num' : null });
      if (onSort && c.sort !== false) {
        th.append(h('button', { type: 'button', onclick: () => this.sortBy(c) }, c.label));
      } else th.append(c.label);
      return th;
    });
    this.el = h('div', { class: 'table-wrap' },
      h('table', { class: 'grid', 'aria-label': label }, cols, h('thead', null, h('tr', null, this.ths)), this.tbody));
    this.markSort();
  }

  sortBy(c) {
    const key = c.sort || c.key;
    if (this.sortKey === key) this.sortRev = !this.sortRev;
    else { this.sortKey = key; this.sortRev = !!c.num; }
    this.markSort();
    this.onSort(this.sortKey, this.sortRev);
  }

  markSort() {
    this.columns.forEach((c, i) => {
      const key = c.sort || c.key;
      if (key && key === this.sortKey) this.ths[i].setAttribute('aria-sort', this.sortRev ? 'descending' : 'ascending');
      else this.ths[i].removeAttribute('aria-sort');
    });
  }

  update(rows) {
    const seen = new Set();
    let prev = null;
    if (!rows.length) {
      this.rows.clear();
      this.tbody.replaceChildren(h('tr', null, h('td', { class: 'empty', colspan: this.columns.length }, this.empty)));
      return;
    }
    if (this.tbody.firstChild && !this.rows.size) this.tbody.replaceChildren();
    for (const row of rows) {
      const key = this.rowKey(row);
      seen.add(key);
      let r = this.rows.get(key);
      if (!r) {
        r = { tr: h('tr', { 'data-key': key }), cells: [] };
        for (const c of this.columns) {
          const td = h('td', { class: c.num ? 'num' : c.cell ? 'actions' : null });
          let target = td;
          if (c.cell) td.append(c.cell(row));
          else if (c.href) { target = h('a', { href: c.href(row) }); td.append(target); }
          r.tr.append(td);
          r.cells.push({ td, target });
        }
        this.rows.set(key, r);
      }
      this.columns.forEach((c, i) => {
        if (c.cell) return;
        const t = c.text ? c.text(row) : get(row, c.key);
        setText(r.cells[i].target, t);
        if (c.title) r.cells[i].td.title = c.title(row);
        else if (!c.num) r.cells[i].td.title = t === undefined || t === null ? '' : String(t);
      });
      r.row = row;
      const want = prev ? prev.nextSibling : this.tbody.firstChild;
      if (want !== r.tr) this.tbody.insertBefore(r.tr, want);
      prev = r.tr;
    }
    for (const [key, r] of this.rows) {
      if (!seen.has(key)) { r.tr.remove(); this.rows.delete(key); }
    }
  }
}

// ---- charts ----

// LEGEND is the room under a plot for its legend: two lines, so a legend
// that wraps as its values change never moves anything.
const LEGEND = 56;

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// Chart is a uPlot time series in a box of fixed height that follows its
// container's width. series: [{label, color: '--c1'}]; fmt formats values.
export class Chart {
  constructor(series, { height = 240, fmt = (v) => String(v), cls = 'chart', title } = {}) {
    this.el = h('div', { class: cls, role: 'img', 'aria-label': title || series.map((s) => s.label).join(', ') });
    this.series = series;
    this.height = height;
    this.fmt = fmt;
    this.data = [[], ...series.map(() => [])];
    this.plot = null;
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(this.el);
  }

  build(width) {
    const fg = cssVar('--muted');
    const grid = cssVar('--line');
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const opts = {
      width, height: this.height - LEGEND,
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      legend: { live: true },
      // The legend shows the latest values unless the pointer is on a point.
      hooks: { setLegend: [(u) => this.latest(u)], setData: [(u) => this.latest(u)] },
      scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.1 : 1] } },
      axes: [{ ...axis }, { ...axis, size: 80, values: (u, vals) => vals.map((v) => this.fmt(v)) }],
      series: [{}, ...this.series.map((s) => ({
        label: s.label, stroke: cssVar(s.color), width: 1.5, points: { show: false },
        fill: s.fill ? cssVar(s.color) + '22' : undefined,
        value: (u, v) => (v === null || v === undefined ? '–' : this.fmt(v)),
      }))],
    };
    this.plot = new window.uPlot(opts, this.data, this.el);
  }

  latest(u) {
    const n = u.data[0].length;
    if (n && (u.legend.idx === null || u.legend.idx === undefined) && u.cursor.left < 0) u.setLegend({ idx: n - 1 }, false);
  }

  resize() {
    const w = Math.floor(this.el.clientWidth);
    if (!w || !window.uPlot) return;
    if (!this.plot) this.build(w);
    else if (Math.abs(this.plot.width - w) > 1) this.plot.setSize({ width: w, height: this.height - LEGEND });
  }

  // set takes xs in seconds and one array per series.
  set(xs, ...ys) {
    this.data = [xs, ...ys];
    if (!this.plot) this.resize();
    if (this.plot) this.plot.setData(this.data);
  }

  destroy() {
    this.ro.disconnect();
    if (this.plot) this.plot.destroy();
  }
}

// series turns RabbitMQ samples (newest first, cumulative counts) into
// chart points, oldest first: as rates when asRate, else as values.
export function series(samples, asRate) {
  const s = (samples || []).slice().reverse();
  const xs = [], ys = [];
  if (!asRate) {
    for (const p of s) { xs.push(p.timestamp / 1000); ys.push(p.sample); }
    return [xs, ys];
  }
  for (let i = 1; i < s.length; i++) {
    const dt = (s[i].timestamp - s[i - 1].timestamp) / 1000;
    xs.push(s[i].timestamp / 1000);
    ys.push(dt > 0 ? Math.max(0, (s[i].sample - s[i - 1].sample) / dt) : 0);
  }
  return [xs, ys];
}

// ---- dialogs and notices ----

// confirmDialog asks in a modal <dialog>; resolves true for the action.
export function confirmDialog(title, text, action = 'OK', danger = true) {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'button', class: danger ? 'danger solid' : 'primary', 'data-confirm': '' }, action);
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const dlg = h('dialog', { 'aria-labelledby': 'dlg-title' }, h('h2', { id: 'dlg-title' }, title), h('p', null, text),
      h('div', { class: 'row' }, cancel, ok));
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    ok.onclick = () => done(true);
    cancel.onclick = () => done(false);
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

export function toast(text, err = false) {
  const t = h('div', { class: 'toast' + (err ? ' err' : ''), role: err ? 'alert' : null }, text);
  document.getElementById('toasts').append(t);
  setTimeout(() => t.remove(), err ? 8000 : 4000);
}

// act runs an API action, reporting success or the API's reason.
export async function act(fn, okText) {
  try {
    const r = await fn();
    if (okText) toast(typeof okText === 'function' ? okText(r) : okText);
    return r === undefined || r === null ? true : r;
  } catch (e) {
    toast(e.message, true);
    return false;
  }
}

// ---- forms ----

export function field(label, input, hint) {
  const id = input.id || 'f-' + Math.random().toString(36).slice(2, 8);
  input.id = id;
  return [h('label', { for: id }, label), hint ? h('div', { class: 'row' }, input, h('span', { class: 'muted' }, hint)) : input];
}

// parseArgs reads "key=value" lines (numbers and booleans typed) or a JSON
// object into an arguments table.
export function parseArgs(text) {
  text = (text || '').trim();
  if (!text) return {};
  if (text.startsWith('{')) return JSON.parse(text);
  const out = {};
  for (const line of text.split('\n')) {
    const l = line.trim();
    if (!l) continue;
    const i = l.indexOf('=');
    if (i < 1) throw new Error(`expected key=value, got "${l}"`);
    const k = l.slice(0, i).trim();
    const v = l.slice(i + 1).trim();
    if (/^-?\d+(\.\d+)?$/.test(v)) out[k] = Number(v);
    else if (v === 'true' || v === 'false') out[k] = v === 'true';
    else out[k] = v;
  }
  return out;
}

export function vhostOptions(sel, withAll) {
  const opts = [];
  if (withAll) opts.push(h('option', { value: '' }, 'All'));
  for (const v of state.vhosts) opts.push(h('option', { value: v, selected: v === state.vhost }, v));
  sel.replaceChildren(...opts);
  return sel;
}

// downloadJSON saves an object as a file.
export function downloadJSON(obj, name) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(obj, null, 2)], { type: 'application/json' }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function refused(what) {
  return h('section', { class: 'panel refused', 'data-refused': '' },
    h('h1', null, 'Not allowed'),
    h('p', null, `${what} needs the administrator tag. Your user, ${state.user ? state.user.name : ''}, has `,
      state.user && state.user.tags.length ? state.user.tags.join(', ') : 'no tags', '.'));
}
