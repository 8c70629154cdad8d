// Exchanges: the list, and a page per exchange with its bindings (both
// ways), a binding form, a publish form and delete.
import { api, h, setText, args, state, vpath, enc, Table, act, confirmDialog, field, parseArgs } from './lib.js';
import { listPage } from './list.js';
import { publishForm } from './queues.js';

const MAX_ROWS = 500;
const xname = (x) => x.name || 'amq.default';
const xhref = (x) => '#/exchanges/' + enc(x.vhost) + '/' + enc(xname(x));

export function exchangesPage() {
  const columns = [
    { key: 'vhost', label: 'Virtual host', width: '14%' },
    { key: 'name', label: 'Name', width: '34%', href: xhref, text: (x) => x.name || '(AMQP default)' },
    { key: 'type', label: 'Type', width: '10%' },
    { key: 'features', label: 'Features', sort: false, width: '27%', text: (x) =>
      [x.durable && 'D', x.auto_delete && 'AD', x.internal && 'I', args(x.arguments)].filter(Boolean).join(' ') },
    { key: 'policy', label: 'Policy', width: '15%', text: (x) => x.policy || '' },
  ];
  return listPage({
    title: 'Exchanges', kind: 'exchanges', base: '/exchanges', columns, sort: 'name',
    rowKey: (x) => x.vhost + '\u0000' + x.name,
    fetchColumns: ['name', 'vhost', 'type', 'durable', 'auto_delete', 'internal', 'arguments', 'policy'],
    extra: addExchangeForm(),
  });
}

function addExchangeForm() {
  const vhost = h('select');
  for (const v of state.vhosts) vhost.append(h('option', { value: v, selected: v === (state.vhost || '/') }, v));
  const name = h('input', { name: 'name', required: true, autocomplete: 'off' });
  const type = h('select', { name: 'type' }, ['direct', 'fanout', 'topic', 'headers'].map((t) => h('option', { value: t }, t)));
  const durable = h('select', null, h('option', { value: 'true' }, 'Durable'), h('option', { value: 'false' }, 'Transient'));
  const autoDelete = h('input', { type: 'checkbox' });
  const internal = h('input', { type: 'checkbox' });
  const argText = h('textarea', { rows: 2, placeholder: 'alternate-exchange=unrouted' });
  const form = h('form', { class: 'form', 'data-form': 'add-exchange' },
    ...field('Virtual host', vhost), ...field('Name', name), ...field('Type', type), ...field('Durability', durable),
    ...field('Auto delete', autoDelete), ...field('Internal', internal), ...field('Arguments', argText, 'key=value per line, or JSON'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add exchange')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let a;
    try { a = parseArgs(argText.value); } catch (err) { return act(() => { throw err; }); }
    const ok = await act(() => api('/exchanges' + vpath(vhost.value, name.value), {
      method: 'PUT', body: { type: type.value, durable: durable.value === 'true', auto_delete: autoDelete.checked, internal: internal.checked, arguments: a },
    }), `Exchange ${name.value} declared`);
    if (ok) { name.value = ''; document.dispatchEvent(new Event('warren:refresh')); }
  });
  return h('details', { class: 'panel section' }, h('summary', null, 'Add an exchange'), form);
}

export function exchangePage(vhost, name) {
  const base = '/exchanges' + vpath(vhost, name);
  const isDefault = name === 'amq.default';
  const dl = h('dl', { class: 'kv' });
  const kv = {};
  for (const [k, label] of [['type', 'Type'], ['durable', 'Durable'], ['auto_delete', 'Auto delete'], ['internal', 'Internal'], ['arguments', 'Arguments'], ['policy', 'Policy']]) {
    const dd = h('dd');
    dl.append(h('dt', null, label), dd);
    kv[k] = dd;
  }
  const destHref = (b) => (b.destination_type === 'queue' ? '#/queues/' : '#/exchanges/') + enc(b.vhost) + '/' + enc(b.destination);
  const unbind = async (b) => {
    const dt = b.destination_type === 'queue' ? 'q' : 'e';
    const ok = await act(() => api(`/bindings${vpath(vhost)}/e/${enc(b.source)}/${dt}/${enc(b.destination)}/${enc(b.properties_key)}`,
      { method: 'DELETE' }), 'Binding removed');
    if (ok) document.dispatchEvent(new Event('warren:refresh'));
  };
  const outgoing = new Table([
    { key: 'destination', label: 'To', width: '35%', href: destHref },
    { key: 'destination_type', label: 'Kind', width: '10%' },
    { key: 'routing_key', label: 'Routing key', width: '25%' },
    { key: 'arguments', label: 'Arguments', width: '18%', text: (b) => args(b.arguments) },
    { key: 'unbind', label: '', width: '12%', cell: (b) => (isDefault ? h('span', { class: 'muted' }, 'implicit')
      : h('button', { type: 'button', class: 'danger', onclick: () => unbind(b) }, 'Unbind')) },
  ], { rowKey: (b) => b.destination_type + b.destination + '\u0000' + b.properties_key, empty: 'No bindings from this exchange.', label: 'Bindings from this exchange' });
  const incoming = new Table([
    { key: 'source', label: 'From', width: '45%', href: (b) => '#/exchanges/' + enc(b.vhost) + '/' + enc(b.source) },
    { key: 'routing_key', label: 'Routing key', width: '25%' },
    { key: 'arguments', label: 'Arguments', width: '18%', text: (b) => args(b.arguments) },
    { key: 'unbind', label: '', width: '12%', cell: (b) => h('button', { type: 'button', class: 'danger', onclick: () => unbind(b) }, 'Unbind') },
  ], { rowKey: (b) => b.source + '\u0000' + b.properties_key, empty: 'No bindings to this exchange.', label: 'Bindings to this exchange' });

  const dtype = h('select', { name: 'destination-type' }, h('option', { value: 'q' }, 'Queue'), h('option', { value: 'e' }, 'Exchange'));
  const dest = h('input', { name: 'destination', required: true });
  const key = h('input', { name: 'routing-key' });
  const ba = h('textarea', { rows: 2 });
  const bindForm = h('form', { class: 'form', 'data-form': 'bind' },
    ...field('To', dtype), ...field('Name', dest), ...field('Routing key', key), ...field('Arguments', ba, 'key=value per line, or JSON'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Bind')));
  bindForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    let a;
    try { a = parseArgs(ba.value); } catch (err) { return act(() => { throw err; }); }
    const ok = await act(() => api(`/bindings${vpath(vhost)}/e/${enc(name)}/${dtype.value}/${enc(dest.value)}`,
      { method: 'POST', body: { routing_key: key.value, arguments: a } }), 'Bound');
    if (ok) { key.value = ''; document.dispatchEvent(new Event('warren:refresh')); }
  });

  const deleteBtn = h('button', { type: 'button', class: 'danger', 'data-action': 'delete' }, 'Delete exchange');
  deleteBtn.onclick = async () => {
    if (!(await confirmDialog('Delete exchange', `Delete ${name} and its bindings?`, 'Delete'))) return;
    if (await act(() => api(base, { method: 'DELETE' }), `Exchange ${name} deleted`)) location.hash = '#/exchanges';
  };
  const gone = h('p', { class: 'error', role: 'alert' });
  const more = h('p', { class: 'muted' });
  const builtin = isDefault || name.startsWith('amq.');
  const el = h('section', { 'data-page': 'exchange' },
    h('p', { class: 'muted' }, h('a', { href: '#/exchanges' }, 'Exchanges'), ' · virtual host ', h('span', { class: 'mono' }, vhost)),
    h('h1', null, 'Exchange ', h('span', { class: 'mono' }, isDefault ? '(AMQP default)' : name)), gone,
    h('div', { class: 'grid2' },
      h('section', { class: 'panel' }, h('h2', null, 'Details'), dl),
      h('section', { class: 'panel' }, h('h2', null, 'Publish a message'), publishForm(vhost, name))),
    h('section', { class: 'panel' }, h('h2', null, 'Bindings from this exchange'), outgoing.el, more,
      isDefault ? h('p', { class: 'muted' }, 'The default exchange routes to the queue named by the routing key; it cannot be bound.')
        : [h('h3', null, 'Add a binding'), bindForm]),
    isDefault ? null : h('section', { class: 'panel' }, h('h2', null, 'Bindings to this exchange'), incoming.el),
    builtin ? null : h('section', { class: 'panel' }, h('h2', null, 'Delete'), deleteBtn));

  async function refresh() {
    let x;
    try { x = await api(base); } catch (e) {
      if (e.status === 404) { setText(gone, 'This exchange no longer exists.'); return; }
      throw e;
    }
    setText(kv.type, x.type);
    setText(kv.durable, x.durable ? 'yes' : 'no');
    setText(kv.auto_delete, x.auto_delete ? 'yes' : 'no');
    setText(kv.internal, x.internal ? 'yes' : 'no');
    setText(kv.arguments, args(x.arguments) || 'none');
    setText(kv.policy, x.policy || 'none');
    const [src, dst] = await Promise.all([api(base + '/bindings/source'), isDefault ? [] : api(base + '/bindings/destination')]);
    // The default exchange is bound to every queue: show a bounded number.
    outgoing.update(src.slice(0, MAX_ROWS));
    setText(more, src.length > MAX_ROWS ? `Showing ${MAX_ROWS} of ${src.length} bindings.` : '');
    incoming.update(dst.slice(0, MAX_ROWS));
  }
  return { el, refresh, title: name };
}
