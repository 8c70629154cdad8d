// Connections and channels, with close actions. A channel is closed by
// closing its connection, as in RabbitMQ's management UI: AMQP gives the
// server no way to close one channel without an error on it.
import { api, h, setText, num, rate, bytes, time, state, enc, get, Table, act, confirmDialog, isAdmin, field } from './lib.js';
import { listPage } from './list.js';

const chref = (name) => '#/connections/' + enc(name);

async function closeConn(name, reason) {
  if (!(await confirmDialog('Close connection', `Close ${name}? Its client sees a connection.close (320).`, 'Close'))) return false;
  const headers = reason ? { 'X-Reason': reason } : undefined;
  const ok = await act(() => api('/connections/' + enc(name), { method: 'DELETE', headers }), 'Connection closed');
  if (ok) document.dispatchEvent(new Event('warren:refresh'));
  return ok;
}

const mayClose = (user) => isAdmin() || (state.user && state.user.name === user);

function client(c) {
  const p = c.client_properties || {};
  return [p.product, p.version, p.platform].filter(Boolean).join(' ');
}

export function connectionsPage() {
  const columns = [
    { key: 'name', label: 'Name', width: '24%', href: (c) => chref(c.name) },
    { key: 'user', label: 'User', width: '9%' },
    { key: 'vhost', label: 'Virtual host', width: '9%' },
    { key: 'client', label: 'Client', sort: false, width: '17%', text: client },
    { key: 'ssl', label: 'TLS', width: '5%', text: (c) => (c.ssl ? 'yes' : '') },
    { key: 'channels', label: 'Channels', num: true, width: '7%', text: (c) => num(c.channels) },
    { key: 'recv_oct_details.rate', label: 'From client', num: true, width: '9%', text: (c) => bytes(get(c, 'recv_oct_details.rate') || 0) + '/s' },
    { key: 'send_oct_details.rate', label: 'To client', num: true, width: '9%', text: (c) => bytes(get(c, 'send_oct_details.rate') || 0) + '/s' },
    { key: 'close', label: '', width: '11%', cell: (c) => (mayClose(c.user)
      ? h('button', { type: 'button', class: 'danger', 'data-action': 'close', onclick: () => closeConn(c.name) }, 'Close') : '') },
  ];
  return listPage({
    title: 'Connections', kind: 'connections', columns, sort: 'name',
    base: (vh) => (vh ? '/vhosts/' + enc(vh) + '/connections' : '/connections'),
    rowKey: (c) => c.name,
  });
}

export function connectionPage(name) {
  const dl = h('dl', { class: 'kv' });
  const kv = {};
  for (const [k, label] of [['user', 'User'], ['vhost', 'Virtual host'], ['peer', 'Client address'], ['client', 'Client'],
    ['auth', 'Authentication'], ['ssl', 'TLS'], ['limits', 'Negotiated'], ['since', 'Connected at'], ['traffic', 'Traffic']]) {
    const dd = h('dd');
    dl.append(h('dt', null, label), dd);
    kv[k] = dd;
  }
  const channels = channelTable(false);
  const reason = h('input', { placeholder: 'Closed via management UI', style: 'width:32ch' });
  const closeBtn = h('button', { type: 'button', class: 'danger', 'data-action': 'close' }, 'Close connection');
  closeBtn.onclick = async () => { if (await closeConn(name, reason.value)) location.hash = '#/connections'; };
  const gone = h('p', { class: 'error', role: 'alert' });
  const closePanel = h('section', { class: 'panel', hidden: true }, h('h2', null, 'Close'),
    h('div', { class: 'row' }, ...field('Reason', reason), closeBtn));
  const el = h('section', { 'data-page': 'connection' },
    h('p', { class: 'muted' }, h('a', { href: '#/connections' }, 'Connections')),
    h('h1', null, 'Connection ', h('span', { class: 'mono' }, name)), gone,
    h('section', { class: 'panel' }, h('h2', null, 'Details'), dl),
    h('section', { class: 'panel' }, h('h2', null, 'Channels'), channels.el),
    closePanel);

  async function refresh() {
    let c;
    try { c = await api('/connections/' + enc(name)); } catch (e) {
      if (e.status === 404) { setText(gone, 'This connection is closed.'); closePanel.hidden = true; return; }
      throw e;
    }
    closePanel.hidden = !mayClose(c.user);
    setText(kv.user, c.user);
    setText(kv.vhost, c.vhost);
    setText(kv.peer, `${c.peer_host}:${c.peer_port}`);
    setText(kv.client, client(c) || 'unknown');
    setText(kv.auth, c.auth_mechanism);
    setText(kv.ssl, c.ssl ? 'yes' : 'no');
    setText(kv.limits, `channel_max ${c.channel_max}, frame_max ${num(c.frame_max)}, heartbeat ${c.timeout} s`);
    setText(kv.since, time(c.connected_at));
    setText(kv.traffic, `${bytes(c.recv_oct)} received (${bytes(get(c, 'recv_oct_details.rate') || 0)}/s), ${bytes(c.send_oct)} sent (${bytes(get(c, 'send_oct_details.rate') || 0)}/s)`);
    channels.update(await api('/connections/' + enc(name) + '/channels'));
  }
  return { el, refresh, title: name };
}

function mode(ch) {
  return [ch.confirm && 'confirm', ch.transactional && 'transactional'].filter(Boolean).join(', ');
}

function channelTable(withConn) {
  return new Table([
    { key: 'name', label: 'Channel', width: withConn ? '28%' : '36%', href: withConn ? (ch) => chref(ch.connection_details.name) : null },
    { key: 'user', label: 'User', width: '10%' },
    { key: 'vhost', label: 'Virtual host', width: '10%' },
    { key: 'mode', label: 'Mode', width: '12%', text: mode },
    { key: 'prefetch_count', label: 'Prefetch', num: true, width: '8%', text: (ch) => num(ch.prefetch_count) },
    { key: 'consumer_count', label: 'Consumers', num: true, width: '9%', text: (ch) => num(ch.consumer_count) },
    { key: 'messages_unacknowledged', label: 'Unacked', num: true, width: '9%', text: (ch) => num(ch.messages_unacknowledged) },
    withConn ? { key: 'close', label: '', width: '14%', cell: (ch) => (mayClose(ch.user)
      ? h('button', { type: 'button', class: 'danger', title: 'Closes the whole connection', onclick: () => closeConn(ch.connection_details.name) }, 'Close connection') : '') } : null,
  ].filter(Boolean), { rowKey: (ch) => ch.name, empty: 'No channels.', label: 'Channels', onSort: withConn ? undefined : undefined });
}

export function channelsPage() {
  const columns = channelTable(true).columns;
  return listPage({
    title: 'Channels', kind: 'channels', columns, sort: 'name',
    base: (vh) => (vh ? '/vhosts/' + enc(vh) + '/channels' : '/channels'),
    rowKey: (ch) => ch.name,
  });
}
