// Overview: the node at a glance. Message rates and queued messages over
// the last ten minutes (the broker keeps the samples, so the charts are
// full on first load), object totals, alarms, and what only Warren shows:
// the disk its queue logs use, how well chunks compress and how long
// group-commit sync rounds take.
import { api, h, setText, num, rate, bytes, seconds, duration, Chart, series, hasTag } from './lib.js';

const WINDOW = 'lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5';

function card(key, label) {
  const v = h('div', { class: 'v', 'data-card': key }, '–');
  const s = h('div', { class: 's' }, '\u00a0');
  const el = h('div', { class: 'card' }, h('div', { class: 'k' }, label), v, s);
  return { el, v, s };
}

export function overviewPage() {
  const c = {
    publish: card('publish', 'Published'), deliver: card('deliver', 'Delivered'), ack: card('ack', 'Acknowledged'),
    confirm: card('confirm', 'Confirmed'), returned: card('returned', 'Returned'),
    ready: card('ready', 'Ready'), unacked: card('unacked', 'Unacked'),
    connections: card('connections', 'Connections'), channels: card('channels', 'Channels'),
    queues: card('queues', 'Queues'), consumers: card('consumers', 'Consumers'), exchanges: card('exchanges', 'Exchanges'),
    alarms: card('alarms', 'Alarms'),
    disk: card('disk', 'Disk used'), ratio: card('ratio', 'Compression ratio'),
    sync: card('sync', 'Sync round (mean)'), syncp99: card('syncp99', 'Sync round (p99)'),
    mem: card('mem', 'Memory'), free: card('free', 'Disk free'), uptime: card('uptime', 'Uptime'),
  };
  const rates = new Chart([
    { label: 'published', color: '--c1' }, { label: 'delivered', color: '--c2' }, { label: 'acked', color: '--c3' },
    { label: 'confirmed', color: '--c4' }, { label: 'returned', color: '--c5' },
  ], { fmt: rate, title: 'Message rates, last 10 minutes' });
  const queued = new Chart([
    { label: 'ready', color: '--c1', fill: true }, { label: 'unacked', color: '--c3', fill: true },
  ], { fmt: num, title: 'Queued messages, last 10 minutes' });
  const sync = new Chart([
    { label: 'mean', color: '--c6' }, { label: 'p99', color: '--c4' },
  ], { fmt: seconds, cls: 'chart small', height: 190, title: 'Sync round latency, last 10 minutes' });
  const disk = new Chart([{ label: 'disk used', color: '--c2', fill: true }],
    { fmt: bytes, cls: 'chart small', height: 190, title: 'Disk used by queue logs, last 10 minutes' });
  const monitor = hasTag('administrator', 'monitoring');
  const nodeLine = h('p', { class: 'muted', id: 'node-line' }, '\u00a0');

  const el = h('section', { 'data-page': 'overview' },
    h('h1', null, 'Overview'), nodeLine,
    h('div', { class: 'cards' }, c.publish.el, c.deliver.el, c.ack.el, c.confirm.el, c.returned.el, c.ready.el, c.unacked.el),
    h('div', { class: 'grid2 charts' },
      h('section', { class: 'panel' }, h('h2', null, 'Message rates', h('span', { class: 'legend-note' }, 'last 10 minutes')), rates.el),
      h('section', { class: 'panel' }, h('h2', null, 'Queued messages', h('span', { class: 'legend-note' }, 'last 10 minutes')), queued.el)),
    h('h3', null, 'Node'),
    h('div', { class: 'cards' }, c.alarms.el, c.connections.el, c.channels.el, c.queues.el, c.consumers.el, c.exchanges.el,
      monitor ? [c.mem.el, c.free.el] : null, c.uptime.el),
    h('h3', null, 'Storage'),
    h('div', { class: 'cards' }, c.disk.el, c.ratio.el, c.sync.el, c.syncp99.el),
    h('div', { class: 'grid2 charts' },
      h('section', { class: 'panel' }, h('h2', null, 'Sync round latency', h('span', { class: 'legend-note' }, 'per 5 s interval')), sync.el),
      h('section', { class: 'panel' }, h('h2', null, 'Disk used by queue logs'), disk.el)));

  function counter(cd, ms, key) {
    setText(cd.v, rate(ms[key + '_details'] ? ms[key + '_details'].rate : 0));
    setText(cd.s, num(ms[key] || 0) + ' in all');
  }

  async function refresh() {
    const [o, nodes] = await Promise.all([
      api('/overview?' + WINDOW),
      monitor ? api('/nodes').catch(() => null) : Promise.resolve(null),
    ]);
    const ms = o.message_stats || {};
    counter(c.publish, ms, 'publish');
    counter(c.deliver, ms, 'deliver_get');
    counter(c.ack, ms, 'ack');
    counter(c.confirm, ms, 'confirm');
    counter(c.returned, ms, 'return_unroutable');
    const qt = o.queue_totals || {};
    setText(c.ready.v, num(qt.messages_ready));
    setText(c.ready.s, rate(qt.messages_ready_details && qt.messages_ready_details.rate) + ' change');
    setText(c.unacked.v, num(qt.messages_unacknowledged));
    setText(c.unacked.s, rate(qt.messages_unacknowledged_details && qt.messages_unacknowledged_details.rate) + ' change');
    const ot = o.object_totals || {};
    for (const k of ['connections', 'channels', 'queues', 'consumers', 'exchanges']) setText(c[k].v, num(ot[k]));
    const al = o.warren_alarms || {};
    const active = [al.memory && 'memory', al.disk && 'disk'].filter(Boolean);
    setText(c.alarms.v, active.length ? active.join(', ') : 'none');
    setText(c.alarms.s, active.length ? 'publishers blocked' : 'memory and disk');
    c.alarms.el.classList.toggle('alarm', active.length > 0);
    c.alarms.el.classList.toggle('good', active.length === 0);
    setText(c.uptime.v, duration(o.uptime || 0));
    setText(c.uptime.s, `${o.product_name || 'Warren'} ${o.product_version || ''}`);
    setText(nodeLine, `Node ${o.node} · ${o.product_name} ${o.product_version} · RabbitMQ API ${o.management_version}`);

    const st = o.warren_storage || {};
    setText(c.disk.v, bytes(st.disk_bytes));
    setText(c.disk.s, `${num(st.segments)} segments`);
    c.disk.el.title = `${num(st.segments)} segment files in ${num(st.queues)} queue logs`;
    setText(c.ratio.v, st.compression_ratio ? st.compression_ratio.toFixed(2) + '×' : '–');
    setText(c.ratio.s, `${bytes(st.written_raw_bytes)} written`);
    c.ratio.el.title = `${bytes(st.written_raw_bytes)} of messages stored in ${bytes(st.written_stored_bytes)} since start`;
    setText(c.sync.v, st.sample_interval_rounds ? seconds(st.sync_round_mean_seconds) : 'idle');
    setText(c.sync.s, `${num(st.sample_interval_rounds || 0)} rounds`);
    setText(c.syncp99.v, st.sample_interval_rounds ? seconds(st.sync_round_p99_seconds) : 'idle');
    setText(c.syncp99.s, `${num(st.sync_rounds)} in all`);

    if (nodes && nodes[0]) {
      const n = nodes[0];
      setText(c.mem.v, bytes(n.mem_used));
      setText(c.mem.s, 'limit ' + bytes(n.mem_limit));
      c.mem.el.classList.toggle('alarm', !!n.mem_alarm);
      setText(c.free.v, bytes(n.disk_free));
      setText(c.free.s, 'limit ' + bytes(n.disk_free_limit));
      c.free.el.classList.toggle('alarm', !!n.disk_free_alarm);
    }

    const d = (k) => ms[k + '_details'] && ms[k + '_details'].samples;
    const pub = series(d('publish'), true);
    rates.set(pub[0], pub[1], series(d('deliver_get'), true)[1], series(d('ack'), true)[1],
      series(d('confirm'), true)[1], series(d('return_unroutable'), true)[1]);
    const rs = series(qt.messages_ready_details && qt.messages_ready_details.samples, false);
    queued.set(rs[0], rs[1], series(qt.messages_unacknowledged_details && qt.messages_unacknowledged_details.samples, false)[1]);
    const sm = series(st.sync_round_mean_seconds_details && st.sync_round_mean_seconds_details.samples, false);
    sync.set(sm[0], sm[1], series(st.sync_round_p99_seconds_details && st.sync_round_p99_seconds_details.samples, false)[1]);
    const db = series(st.disk_bytes_details && st.disk_bytes_details.samples, false);
    disk.set(db[0], db[1]);
  }

  return { el, refresh, title: 'Overview', destroy() { [rates, queued, sync, disk].forEach((x) => x.destroy()); } };
}
