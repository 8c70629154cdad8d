// The shell: login, navigation, routing on the URL's hash, the theme and
// the refresh loop (every 5 s, the broker's sampling interval; paused
// while the tab is hidden).
import { state, api, h, setText, isAdmin, hasTag, toast, vhostOptions } from './lib.js';
import { overviewPage } from './overview.js';
import { queuesPage, queuePage } from './queues.js';
import { exchangesPage, exchangePage } from './exchanges.js';
import { connectionsPage, connectionPage, channelsPage } from './connections.js';
import { adminPage } from './admin.js';

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);

let page = null;
let timer = null;
let busy = false;

// ---- theme ----

function applyTheme(t) {
  if (t) document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
}
applyTheme(localStorage.getItem('warren.theme'));
$('theme').addEventListener('click', () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === 'dark'
    : matchMedia('(prefers-color-scheme: dark)').matches;
  const t = dark ? 'light' : 'dark';
  localStorage.setItem('warren.theme', t);
  applyTheme(t);
  if (state.user) route(); // charts pick their colours when built
});

// ---- login ----

function showLogin(message) {
  state.user = null;
  state.auth = '';
  sessionStorage.removeItem('warren.auth');
  stopPage();
  $('nav').hidden = true;
  $('tools').hidden = true;
  $('page').replaceChildren();
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('login-user').focus();
}

async function whoami() {
  const me = await api('/whoami');
  const management = ['administrator', 'monitoring', 'policymaker', 'management'];
  if (!me.tags.some((t) => management.includes(t))) {
    const err = new Error(`User ${me.name} has no management tag`);
    err.status = 403;
    throw err;
  }
  return me;
}

async function start() {
  const vhosts = api('/vhosts?columns=name').catch(() => null); // in parallel with whoami
  state.user = await whoami();
  $('login').hidden = true;
  $('nav').hidden = false;
  $('tools').hidden = false;
  $('nav-admin').hidden = !hasTag('administrator', 'policymaker');
  setText($('who'), state.user.name);
  $('who').title = 'Tags: ' + (state.user.tags.join(', ') || 'none');
  await loadVHosts(vhosts);
  route();
}

state.reloadVHosts = () => loadVHosts();

export async function loadVHosts(pending) {
  const vs = await (pending || api('/vhosts?columns=name').catch(() => null));
  state.vhosts = vs ? vs.map((v) => v.name) : ['/'];
  if (state.vhost && !state.vhosts.includes(state.vhost)) state.vhost = '';
  vhostOptions($('vhost-select'), true);
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const user = $('login-user').value;
  const pass = $('login-pass').value;
  state.auth = btoa(unescape(encodeURIComponent(user + ':' + pass)));
  $('login-submit').disabled = true;
  try {
    await start();
    sessionStorage.setItem('warren.auth', state.auth);
    $('login-pass').value = '';
  } catch (err) {
    const msg = err.status === 401 ? 'Login failed: wrong username or password, or guest from another host.'
      : err.status === 403 ? err.message : 'Login failed: ' + err.message;
    showLogin(msg);
    $('login-user').value = user;
  } finally {
    $('login-submit').disabled = false;
  }
});

$('logout').addEventListener('click', () => { showLogin(''); location.hash = '#/'; });
document.addEventListener('warren:logout', (e) => { if (state.user) showLogin(e.detail); });

$('vhost-select').addEventListener('change', (e) => {
  state.vhost = e.target.value;
  localStorage.setItem('warren.vhost', state.vhost);
  route();
});

// ---- routing ----

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  const segs = path ? path.split('/').map((s) => decodeURIComponent(s)) : [];
  return { segs, query: new URLSearchParams(query || '') };
}

function pick({ segs, query }) {
  const [a, b, c] = segs;
  switch (a) {
    case undefined: case '': return ['overview', () => overviewPage()];
    case 'queues': return ['queues', () => (b !== undefined && c !== undefined ? queuePage(b, c) : queuesPage(query))];
    case 'exchanges': return ['exchanges', () => (b !== undefined && c !== undefined ? exchangePage(b, c) : exchangesPage(query))];
    case 'connections': return ['connections', () => (b !== undefined ? connectionPage(b) : connectionsPage(query))];
    case 'channels': return ['channels', () => channelsPage(query)];
    case 'admin': return ['admin', () => adminPage(b || (isAdmin() ? 'users' : 'policies'))];
    default: return ['', () => ({ el: h('section', { class: 'panel' }, h('h1', null, 'Not found'), h('p', null, 'No such page.')) })];
  }
}

function stopPage() {
  clearTimeout(timer);
  if (page && page.destroy) page.destroy();
  page = null;
}

function route() {
  if (!state.user) return;
  stopPage();
  const [nav, make] = pick(parseHash());
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  page = make();
  $('page').replaceChildren(page.el);
  document.title = (page.title ? page.title + ' · ' : '') + 'Warren';
  tick();
}

async function tick() {
  clearTimeout(timer);
  const p = page;
  if (!p || !p.refresh) return;
  if (!document.hidden && !busy) {
    busy = true;
    try {
      await p.refresh();
      setText($('updated'), 'updated ' + new Date().toLocaleTimeString([], { hour12: false }));
      if (!p.rendered) {
        p.rendered = true;
        // Tests and the page-weight measurement read this mark.
        performance.mark('warren:rendered');
        document.body.dataset.rendered = p.title || '';
      }
    } catch (e) {
      if (p === page) {
        if (p.fail) p.fail(e); else toast(e.message, true);
      }
    } finally {
      busy = false;
    }
  }
  if (p === page) timer = setTimeout(tick, REFRESH_MS);
}

// refreshNow re-reads the current page at once (after an action).
export function refreshNow() { tick(); }
document.addEventListener('warren:refresh', refreshNow);
document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
window.addEventListener('hashchange', route);

// Keys, outside form fields: "/" focuses the page's filter; "g" then a
// letter goes to a section (o overview, q queues, e exchanges,
// c connections, h channels, a admin).
const GO = { o: '#/', q: '#/queues', e: '#/exchanges', c: '#/connections', h: '#/channels', a: '#/admin' };
let gPressed = 0;
document.addEventListener('keydown', (e) => {
  if (!state.user || e.ctrlKey || e.metaKey || e.altKey || /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName)
    || document.querySelector('dialog[open]')) return;
  if (e.key === '/') {
    const f = document.querySelector('[data-filter]');
    if (f) { e.preventDefault(); f.focus(); }
  } else if (e.key === 'g') {
    gPressed = Date.now();
  } else if (gPressed && Date.now() - gPressed < 1500 && GO[e.key]) {
    gPressed = 0;
    if (e.key !== 'a' || hasTag('administrator', 'policymaker')) {
      location.hash = GO[e.key];
      $('main').focus();
    }
  } else {
    gPressed = 0;
  }
});

// ---- start ----

if (state.auth) {
  start().catch((err) => showLogin(err.status === 401 ? '' : err.message));
} else {
  showLogin('');
}
