// A paged, sorted, filtered list read from the API with RabbitMQ's list
// options (page, page_size, name, use_regex, sort, sort_reverse, columns):
// the server does the work, so a list of 10,000 queues costs the page one
// page of rows. The options live in the URL's hash, so back and forward
// and bookmarks keep them.
import { api, h, setText, num, Table, state } from './lib.js';

export function listPage({ title, kind, base, columns, rowKey, sort, sortRev = false, fetchColumns, extra, perVHost = true, label }) {
  const q = new URLSearchParams(location.hash.split('?')[1] || '');
  const opt = {
    page: Number(q.get('page')) || 1,
    size: Number(q.get('page_size')) || 100,
    name: q.get('name') || '',
    regex: q.get('use_regex') === 'true',
    sort: q.get('sort') || sort,
    rev: q.has('sort_reverse') ? q.get('sort_reverse') === 'true' : sortRev,
  };
  const table = new Table(columns, {
    rowKey, sortKey: opt.sort, sortRev: opt.rev, label: label || title,
    onSort: (k, rev) => { opt.sort = k; opt.rev = rev; opt.page = 1; changed(); },
    empty: 'No ' + title.toLowerCase() + (opt.name ? ' match the filter.' : '.'),
  });
  const filter = h('input', { type: 'search', placeholder: 'Filter by name  ( / )', value: opt.name, 'data-filter': '', 'aria-label': 'Filter by name' });
  const regex = h('input', { type: 'checkbox', checked: opt.regex });
  const size = h('select', { 'aria-label': 'Rows per page' }, [25, 50, 100, 200, 500].map((n) => h('option', { value: n, selected: n === opt.size }, n + ' per page')));
  const prev = h('button', { type: 'button', 'aria-label': 'Previous page' }, '‹ Previous');
  const next = h('button', { type: 'button', 'aria-label': 'Next page' }, 'Next ›');
  const count = h('span', { class: 'count', 'aria-live': 'polite' }, '\u00a0');
  const pageNo = h('input', { type: 'number', min: 1, value: opt.page, style: 'width:7ch', 'aria-label': 'Page' });
  const of = h('span', { class: 'num' }, '');

  let debounce;
  filter.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { opt.name = filter.value; opt.page = 1; changed(); }, 200);
  });
  // Escape clears the filter, and a second Escape leaves it.
  filter.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    if (!filter.value) { filter.blur(); return; }
    filter.value = ''; opt.name = ''; changed();
  });
  regex.addEventListener('change', () => { opt.regex = regex.checked; opt.page = 1; changed(); });
  size.addEventListener('change', () => { opt.size = Number(size.value); opt.page = 1; changed(); });
  prev.addEventListener('click', () => { if (opt.page > 1) { opt.page--; changed(); } });
  next.addEventListener('click', () => { opt.page++; changed(); });
  pageNo.addEventListener('change', () => { opt.page = Math.max(1, Number(pageNo.value) || 1); changed(); });

  function changed() {
    const p = new URLSearchParams();
    if (opt.page > 1) p.set('page', opt.page);
    if (opt.size !== 100) p.set('page_size', opt.size);
    if (opt.name) p.set('name', opt.name);
    if (opt.regex) p.set('use_regex', 'true');
    if (opt.sort !== sort || opt.rev !== sortRev) { p.set('sort', opt.sort); p.set('sort_reverse', String(opt.rev)); }
    const s = p.toString();
    history.replaceState(null, '', '#/' + kind + (s ? '?' + s : ''));
    document.dispatchEvent(new Event('warren:refresh'));
  }

  const el = h('section', { 'data-page': kind },
    h('h1', null, title),
    h('div', { class: 'filters' }, filter, h('label', { class: 'check' }, regex, 'Regular expression'), size,
      perVHost ? h('span', { class: 'muted' }, state.vhost ? `in virtual host ${state.vhost}` : 'in all virtual hosts') : null),
    h('section', { class: 'panel' }, table.el,
      h('div', { class: 'pager' }, prev, h('span', null, 'Page'), pageNo, of, next, count)),
    extra || null);

  async function refresh() {
    const p = new URLSearchParams({ page: opt.page, page_size: opt.size });
    if (opt.name) p.set('name', opt.name);
    if (opt.regex) p.set('use_regex', 'true');
    if (opt.sort) p.set('sort', opt.sort);
    if (opt.rev) p.set('sort_reverse', 'true');
    if (fetchColumns) p.set('columns', fetchColumns.join(','));
    const path = (typeof base === 'function' ? base(state.vhost)
      : perVHost && state.vhost ? base + '/' + encodeURIComponent(state.vhost) : base) + '?' + p;
    const r = await api(path);
    if (r.page_count > 0 && opt.page > r.page_count) { opt.page = r.page_count; return refresh(); }
    table.update(r.items || []);
    setText(of, 'of ' + num(Math.max(r.page_count, 1)));
    if (document.activeElement !== pageNo) pageNo.value = opt.page;
    prev.disabled = opt.page <= 1;
    next.disabled = opt.page >= r.page_count;
    const shown = r.item_count ? `${num((r.page - 1) * r.page_size + 1)}–${num((r.page - 1) * r.page_size + r.item_count)}` : '0';
    setText(count, `${shown} of ${num(r.filtered_count)}` + (r.filtered_count !== r.total_count ? ` (${num(r.total_count)} in all)` : ''));
  }

  return { el, refresh, title, table };
}
