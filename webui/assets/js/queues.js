// Queues: the paged list, and a page per queue with its depth over time,
// consumers, bindings, arguments and policy, and the publish, get, purge
// and delete actions.
import {
  api, h, setText, num, rate, args, state, vpath, enc, Table, Chart, series, act, confirmDialog, field, parseArgs, get,
} from './lib.js';
import { listPage } from './list.js';

const qhref = (q) => '#/queues/' + enc(q.vhost) + '/' + enc(q.name);

function features(q) {
  const f = [];
  if (q.durable) f.push('D');
  if (q.auto_delete) f.push('AD');
  if (q.exclusive) f.push('Excl');
  for (const k of Object.keys(q.arguments || {})) f.push(k.replace(/^x-/, ''));
  return f.join(' ');
}

export function queuesPage() {
  const columns = [
    { key: 'vhost', label: 'Virtual host', width: '11%' },
    { key: 'name', label: 'Name', width: '24%', href: qhref },
    { key: 'features', label: 'Features', width: '13%', sort: false, text: features },
    { key: 'policy', label: 'Policy', width: '8%', text: (q) => q.policy || '' },
    { key: 'messages_ready', label: 'Ready', num: true, width: '8%', text: (q) => num(q.messages_ready) },
    { key: 'messages_unacknowledged', label: 'Unacked', num: true, width: '8%', text: (q) => num(q.messages_unacknowledged) },
    { key: 'consumers', label: 'Consumers', num: true, width: '7%', text: (q) => num(q.consumers) },
    { key: 'message_stats.publish_details.rate', label: 'In', num: true, width: '7%', text: (q) => rate(get(q, 'message_stats.publish_details.rate') || 0) },
    { key: 'message_stats.deliver_get_details.rate', label: 'Out', num: true, width: '7%', text: (q) => rate(get(q, 'message_stats.deliver_get_details.rate') || 0) },
    { key: 'message_stats.ack_details.rate', label: 'Acked', num: true, width: '7%', text: (q) => rate(get(q, 'message_stats.ack_details.rate') || 0) },
  ];
  const p = listPage({
    title: 'Queues', kind: 'queues', base: '/queues', columns, sort: 'name',
    rowKey: (q) => q.vhost + '\u0000' + q.name,
    fetchColumns: ['name', 'vhost', 'durable', 'auto_delete', 'exclusive', 'arguments', 'policy', 'messages_ready',
      'messages_unacknowledged', 'consumers', 'message_stats.publish_details.rate', 'message_stats.deliver_get_details.rate',
      'message_stats.ack_details.rate'],
    extra: addQueueForm(),
  });
  return p;
}

function addQueueForm() {
  const vhost = h('select');
  for (const v of state.vhosts) vhost.append(h('option', { value: v, selected: v === (state.vhost || '/') }, v));
  const name = h('input', { name: 'name', required: true, autocomplete: 'off' });
  const durable = h('select', null, h('option', { value: 'true' }, 'Durable'), h('option', { value: 'false' }, 'Transient'));
  const autoDelete = h('input', { type: 'checkbox' });
  const argText = h('textarea', { placeholder: 'x-max-length=10000\nx-queue-type=classic', rows: 3 });
  const form = h('form', { class: 'form', 'data-form': 'add-queue' },
    ...field('Virtual host', vhost), ...field('Name', name), ...field('Durability', durable),
    ...field('Auto delete', autoDelete), ...field('Arguments', argText, 'key=value per line, or JSON'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add queue')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let a;
    try { a = parseArgs(argText.value); } catch (err) { return act(() => { throw err; }); }
    const ok = await act(() => api('/queues' + vpath(vhost.value, name.value), {
      method: 'PUT', body: { durable: durable.value === 'true', auto_delete: autoDelete.checked, arguments: a },
    }), `Queue ${name.value} declared`);
    if (ok) { name.value = ''; document.dispatchEvent(new Event('warren:refresh')); }
  });
  return h('details', { class: 'panel section' }, h('summary', null, 'Add a queue'), form);
}

function kvRow(dl, label) {
  const dd = h('dd');
  dl.append(h('dt', null, label), dd);
  return dd;
}

export function queuePage(vhost, name) {
  const base = '/queues' + vpath(vhost, name);
  const cards = {};
  const cardEls = [['ready', 'Ready'], ['unacked', 'Unacked'], ['total', 'Total'], ['consumers', 'Consumers'],
    ['in', 'Published'], ['out', 'Delivered'], ['ack', 'Acknowledged'], ['redeliver', 'Redelivered']].map(([k, label]) => {
    const v = h('div', { class: 'v', 'data-card': k }, '–');
    const s = h('div', { class: 's' }, '\u00a0');
    cards[k] = { v, s };
    return h('div', { class: 'card' }, h('div', { class: 'k' }, label), v, s);
  });
  const depth = new Chart([{ label: 'ready', color: '--c1', fill: true }, { label: 'unacked', color: '--c3', fill: true }],
    { fmt: num, title: 'Queue depth, last 10 minutes' });

  const dl = h('dl', { class: 'kv' });
  const kv = {};
  for (const [k, label] of [['type', 'Type'], ['durable', 'Durable'], ['auto_delete', 'Auto delete'], ['exclusive', 'Exclusive'],
    ['arguments', 'Arguments'], ['policy', 'Policy'], ['effective', 'Effective policy'], ['owner', 'Owner'], ['sac', 'Active consumer']]) {
    kv[k] = kvRow(dl, label);
  }

  const consumers = new Table([
    { key: 'consumer_tag', label: 'Tag', width: '26%' },
    { key: 'channel', label: 'Channel', width: '30%', text: (c) => c.channel_details.name,
      href: (c) => '#/connections/' + enc(c.channel_details.connection_name) },
    { key: 'ack', label: 'Ack required', width: '11%', text: (c) => (c.ack_required ? 'yes' : 'no') },
    { key: 'prefetch_count', label: 'Prefetch', num: true, width: '9%', text: (c) => num(c.prefetch_count) },
    { key: 'priority', label: 'Priority', num: true, width: '8%', text: (c) => num(c.priority || 0) },
    { key: 'activity_status', label: 'Status', width: '9%' },
    { key: 'exclusive', label: 'Exclusive', width: '8%', text: (c) => (c.exclusive ? 'yes' : '') },
  ], { rowKey: (c) => c.channel_details.name + '\u0000' + c.consumer_tag, empty: 'No consumers.', label: 'Consumers' });

  const bindings = new Table([
    { key: 'source', label: 'From exchange', width: '35%', text: (b) => b.source || '(AMQP default)',
      href: (b) => '#/exchanges/' + enc(b.vhost) + '/' + enc(b.source || 'amq.default') },
    { key: 'routing_key', label: 'Routing key', width: '30%' },
    { key: 'arguments', label: 'Arguments', width: '20%', text: (b) => args(b.arguments) },
    { key: 'unbind', label: '', width: '15%', cell: (b) => (b.source ? h('button', {
      type: 'button', class: 'danger', onclick: () => unbind(b),
    }, 'Unbind') : h('span', { class: 'muted' }, 'implicit')) },
  ], { rowKey: (b) => b.source + '\u0000' + b.properties_key, empty: 'No bindings.', label: 'Bindings' });

  async function unbind(b) {
    const ok = await act(() => api(`/bindings${vpath(vhost)}/e/${enc(b.source)}/q/${enc(name)}/${enc(b.properties_key)}`,
      { method: 'DELETE' }), 'Binding removed');
    if (ok) document.dispatchEvent(new Event('warren:refresh'));
  }

  // bind form
  const bx = h('input', { required: true, 'aria-label': 'Exchange', list: 'exchange-names' });
  const bk = h('input', { 'aria-label': 'Routing key' });
  const ba = h('textarea', { rows: 2, 'aria-label': 'Binding arguments' });
  const bindForm = h('form', { class: 'form', 'data-form': 'bind' },
    ...field('From exchange', bx), ...field('Routing key', bk), ...field('Arguments', ba, 'key=value per line, or JSON'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Bind')));
  bindForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    let a;
    try { a = parseArgs(ba.value); } catch (err) { return act(() => { throw err; }); }
    const ok = await act(() => api(`/bindings${vpath(vhost)}/e/${enc(bx.value)}/q/${enc(name)}`,
      { method: 'POST', body: { routing_key: bk.value, arguments: a } }), 'Bound');
    if (ok) { bk.value = ''; document.dispatchEvent(new Event('warren:refresh')); }
  });

  const publish = publishForm(vhost, 'amq.default', name);
  const getForm = getMessagesForm(base);

  const purgeBtn = h('button', { type: 'button', class: 'danger', 'data-action': 'purge' }, 'Purge messages');
  purgeBtn.onclick = async () => {
    if (!(await confirmDialog('Purge queue', `Remove every ready message from ${name}?`, 'Purge'))) return;
    const ok = await act(() => api(base + '/contents', { method: 'DELETE' }), `Queue ${name} purged`);
    if (ok) document.dispatchEvent(new Event('warren:refresh'));
  };
  const ifUnused = h('input', { type: 'checkbox' });
  const ifEmpty = h('input', { type: 'checkbox' });
  const deleteBtn = h('button', { type: 'button', class: 'danger', 'data-action': 'delete' }, 'Delete queue');
  deleteBtn.onclick = async () => {
    if (!(await confirmDialog('Delete queue', `Delete ${name} and its messages?`, 'Delete'))) return;
    const q = new URLSearchParams();
    if (ifUnused.checked) q.set('if-unused', 'true');
    if (ifEmpty.checked) q.set('if-empty', 'true');
    const ok = await act(() => api(base + (q.toString() ? '?' + q : ''), { method: 'DELETE' }), `Queue ${name} deleted`);
    if (ok) location.hash = '#/queues';
  };

  const gone = h('p', { class: 'error', role: 'alert' });
  const el = h('section', { 'data-page': 'queue' },
    h('p', { class: 'muted' }, h('a', { href: '#/queues' }, 'Queues'), ' · virtual host ', h('span', { class: 'mono' }, vhost)),
    h('h1', null, 'Queue ', h('span', { class: 'mono', 'data-queue-name': '' }, name)), gone,
    h('div', { class: 'cards' }, cardEls),
    h('div', { class: 'grid2 charts' },
      h('section', { class: 'panel' }, h('h2', null, 'Depth', h('span', { class: 'legend-note' }, 'last 10 minutes')), depth.el),
      h('section', { class: 'panel' }, h('h2', null, 'Details'), dl)),
    h('section', { class: 'panel' }, h('h2', null, 'Consumers'), consumers.el),
    h('section', { class: 'panel' }, h('h2', null, 'Bindings'), bindings.el, h('h3', null, 'Add a binding'), bindForm),
    h('div', { class: 'grid2' },
      h('section', { class: 'panel' }, h('h2', null, 'Publish a message'), publish),
      h('section', { class: 'panel' }, h('h2', null, 'Get messages'), getForm)),
    h('section', { class: 'panel' }, h('h2', null, 'Purge and delete'),
      h('div', { class: 'row' }, purgeBtn, h('span', { class: 'spacer' }), deleteBtn,
        h('label', { class: 'check' }, ifUnused, 'only if unused'), h('label', { class: 'check' }, ifEmpty, 'only if empty'))));

  async function refresh() {
    let q;
    try {
      q = await api(base + '?lengths_age=600&lengths_incr=5');
    } catch (e) {
      if (e.status === 404) { setText(gone, 'This queue no longer exists.'); return; }
      throw e;
    }
    setText(gone, '');
    setText(cards.ready.v, num(q.messages_ready));
    setText(cards.unacked.v, num(q.messages_unacknowledged));
    setText(cards.total.v, num(q.messages));
    setText(cards.consumers.v, num(q.consumers));
    setText(cards.ready.s, rate(get(q, 'messages_ready_details.rate') || 0) + ' change');
    setText(cards.unacked.s, rate(get(q, 'messages_unacknowledged_details.rate') || 0) + ' change');
    setText(cards.total.s, '\u00a0');
    setText(cards.consumers.s, q.consumers ? `utilisation ${Math.round((q.consumer_utilisation || 0) * 100)}%` : 'none');
    const ms = q.message_stats || {};
    const rc = (k, key) => { setText(cards[k].v, rate(get(ms, key + '_details.rate') || 0)); setText(cards[k].s, num(ms[key] || 0) + ' in all'); };
    rc('in', 'publish'); rc('out', 'deliver_get'); rc('ack', 'ack'); rc('redeliver', 'redeliver');
    setText(kv.type, q.type);
    setText(kv.durable, q.durable ? 'yes' : 'no');
    setText(kv.auto_delete, q.auto_delete ? 'yes' : 'no');
    setText(kv.exclusive, q.exclusive ? 'yes' : 'no');
    setText(kv.arguments, args(q.arguments) || 'none');
    setText(kv.policy, q.policy || 'none');
    setText(kv.effective, args(q.effective_policy_definition) || 'none');
    setText(kv.owner, get(q, 'owner_pid_details.name') || '');
    setText(kv.sac, q.single_active_consumer_tag || q.exclusive_consumer_tag || '');
    const rs = series(get(q, 'messages_ready_details.samples'), false);
    depth.set(rs[0], rs[1], series(get(q, 'messages_unacknowledged_details.samples'), false)[1]);
    consumers.update(q.consumer_details || []);
    bindings.update(await api(base + '/bindings'));
  }

  return { el, refresh, title: name, destroy() { depth.destroy(); } };
}

// publishForm posts to an exchange ("amq.default" for the default one).
export function publishForm(vhost, exchange, fixedKey) {
  const key = h('input', { value: fixedKey || '', 'aria-label': 'Routing key', 'data-field': 'routing-key', readonly: fixedKey ? true : null });
  const mode = h('select', { 'data-field': 'delivery-mode' }, h('option', { value: '2' }, 'Persistent'), h('option', { value: '1' }, 'Non-persistent'));
  const headers = h('textarea', { rows: 2, 'data-field': 'headers', placeholder: 'key=value per line' });
  const props = h('textarea', { rows: 2, 'data-field': 'properties', placeholder: 'content_type=application/json\ncorrelation_id=abc' });
  const payload = h('textarea', { rows: 4, 'data-field': 'payload' });
  const encoding = h('select', null, h('option', { value: 'string' }, 'String'), h('option', { value: 'base64' }, 'Base64'));
  const result = h('span', { class: 'muted', 'data-result': 'publish', 'aria-live': 'polite' });
  const form = h('form', { class: 'form', 'data-form': 'publish' },
    ...field('Routing key', key, fixedKey ? 'through the default exchange' : null), ...field('Delivery mode', mode),
    ...field('Headers', headers), ...field('Properties', props), ...field('Payload', payload), ...field('Encoding', encoding),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Publish message'), result));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let properties;
    try {
      properties = { delivery_mode: Number(mode.value), headers: parseArgs(headers.value), ...parseArgs(props.value) };
    } catch (err) { return act(() => { throw err; }); }
    const r = await act(() => api('/exchanges' + vpath(vhost, exchange) + '/publish', {
      method: 'POST', body: { routing_key: key.value, properties, payload: payload.value, payload_encoding: encoding.value },
    }), (r) => (r && r.routed ? 'Message published' : 'Message published, but not routed to any queue'));
    if (r) {
      setText(result, r.routed ? 'Published and routed.' : 'Published, but no queue took it.');
      document.dispatchEvent(new Event('warren:refresh'));
    }
  });
  return form;
}

function getMessagesForm(base) {
  const ackmode = h('select', { 'data-field': 'ackmode' },
    h('option', { value: 'ack_requeue_true' }, 'Nack, requeue'),
    h('option', { value: 'ack_requeue_false' }, 'Ack, remove from the queue'),
    h('option', { value: 'reject_requeue_false' }, 'Reject, no requeue (dead-letter)'));
  const encoding = h('select', null, h('option', { value: 'auto' }, 'Auto: string or base64'), h('option', { value: 'base64' }, 'Base64'));
  const count = h('input', { type: 'number', min: 1, max: 1000, value: 1, style: 'width:8ch', 'data-field': 'count' });
  const truncate = h('input', { type: 'number', min: 0, value: 50000, style: 'width:10ch' });
  const out = h('div', { class: 'messages', 'data-result': 'get', 'aria-live': 'polite' });
  const form = h('form', { class: 'form', 'data-form': 'get' },
    ...field('Ack mode', ackmode), ...field('Encoding', encoding), ...field('Messages', count), ...field('Truncate at', truncate, 'bytes'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Get messages')), h('div', { class: 'full' }, out));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const msgs = await act(() => api(base + '/get', {
      method: 'POST', body: { count: Number(count.value), ackmode: ackmode.value, encoding: encoding.value, truncate: Number(truncate.value) },
    }));
    if (!msgs) return;
    if (!msgs.length) { out.replaceChildren(h('p', { class: 'muted' }, 'The queue is empty.')); return; }
    out.replaceChildren(...msgs.map((m, i) => h('div', { class: 'msg', 'data-message': i },
      h('dl', { class: 'kv' },
        h('dt', null, 'Message'), h('dd', null, `${i + 1} of ${msgs.length}, ${num(m.message_count)} left in the queue`),
        h('dt', null, 'Exchange'), h('dd', null, m.exchange || '(AMQP default)'),
        h('dt', null, 'Routing key'), h('dd', null, m.routing_key),
        h('dt', null, 'Redelivered'), h('dd', null, m.redelivered ? 'yes' : 'no'),
        h('dt', null, 'Properties'), h('dd', null, args(m.properties) || 'none'),
        h('dt', null, 'Payload'), h('dd', null, `${num(m.payload_bytes)} bytes, ${m.payload_encoding}`)),
      h('pre', { 'data-payload': '' }, m.payload))));
    document.dispatchEvent(new Event('warren:refresh'));
  });
  return form;
}
