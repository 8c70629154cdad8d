// Administration: users, virtual hosts, permissions, policies, definitions
// export and import, and the alarm thresholds. Users, vhosts, permissions,
// definitions and limits need the administrator tag; policies the
// policymaker or administrator tag. The API enforces the same rules; the
// page only says so before asking.
import {
  api, h, setText, num, state, vpath, enc, Table, act, confirmDialog, field, isAdmin, hasTag, refused, downloadJSON, args,
} from './lib.js';

const TABS = [
  ['users', 'Users', 'administrator'], ['vhosts', 'Virtual hosts', 'administrator'], ['permissions', 'Permissions', 'administrator'],
  ['policies', 'Policies', 'policymaker'], ['definitions', 'Definitions', 'administrator'], ['limits', 'Limits', 'administrator'],
];
const refresh = () => document.dispatchEvent(new Event('warren:refresh'));

export function adminPage(tab) {
  const allowed = (need) => isAdmin() || (need === 'policymaker' && hasTag('policymaker'));
  const t = TABS.find((x) => x[0] === tab) || TABS[0];
  const nav = h('nav', { class: 'tabs', 'aria-label': 'Administration' }, TABS.filter((x) => allowed(x[2])).map(([k, label]) =>
    h('a', { href: '#/admin/' + k, 'aria-current': k === t[0] ? 'page' : null }, label)));
  if (!allowed(t[2])) {
    return { el: h('section', { 'data-page': 'admin' }, refused(t[1])), title: 'Not allowed' };
  }
  const make = { users: usersTab, vhosts: vhostsTab, permissions: permissionsTab, policies: policiesTab, definitions: definitionsTab, limits: limitsTab }[t[0]];
  const p = make();
  return { el: h('section', { 'data-page': 'admin-' + t[0] }, h('h1', null, 'Admin'), nav, p.el), refresh: p.refresh, title: t[1] };
}

function form(name, fields, submit, onSubmit) {
  const f = h('form', { class: 'form', 'data-form': name }, ...fields, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, submit)));
  f.addEventListener('submit', (e) => { e.preventDefault(); onSubmit(); });
  return f;
}

function del(label, what, path, after) {
  return h('button', { type: 'button', class: 'danger', onclick: async () => {
    if (!(await confirmDialog('Delete ' + label, `Delete ${what}?`, 'Delete'))) return;
    if (await act(() => api(path, { method: 'DELETE' }), `Deleted ${what}`)) { if (after) after(); refresh(); }
  } }, 'Delete');
}

function usersTab() {
  const table = new Table([
    { key: 'name', label: 'Name', width: '30%' },
    { key: 'tags', label: 'Tags', width: '35%', text: (u) => u.tags.join(', ') },
    { key: 'hash', label: 'Password', width: '20%', text: (u) => (u.password_hash ? 'set' : 'none (cannot log in with one)') },
    { key: 'del', label: '', width: '15%', cell: (u) => h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => edit(u) }, 'Edit'),
      u.name === state.user.name ? null : del('user', 'user ' + u.name, '/users/' + enc(u.name))) },
  ], { rowKey: (u) => u.name, label: 'Users' });
  const name = h('input', { name: 'name', required: true, autocomplete: 'off' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'new-password' });
  const tags = h('input', { name: 'tags', placeholder: 'administrator, monitoring, policymaker, management' });
  const presets = h('div', { class: 'row' }, ['administrator', 'monitoring', 'policymaker', 'management'].map((t) =>
    h('button', { type: 'button', class: 'link', onclick: () => {
      const cur = tags.value.split(',').map((s) => s.trim()).filter(Boolean);
      if (!cur.includes(t)) cur.push(t);
      tags.value = cur.join(', ');
    } }, '+' + t)));
  const f = form('user', [...field('Name', name), ...field('Password', pass, 'empty keeps an existing password'),
    ...field('Tags', tags), h('span'), presets], 'Save user', async () => {
    const body = { tags: tags.value };
    if (pass.value) body.password = pass.value;
    if (await act(() => api('/users/' + enc(name.value), { method: 'PUT', body }), `User ${name.value} saved`)) {
      pass.value = ''; refresh();
    }
  });
  function edit(u) { name.value = u.name; tags.value = u.tags.join(', '); pass.value = ''; pass.focus(); }
  return {
    el: h('div', null, h('section', { class: 'panel' }, h('h2', null, 'Users'), table.el),
      h('section', { class: 'panel' }, h('h2', null, 'Add or change a user'), f)),
    async refresh() { table.update(await api('/users')); },
  };
}

function vhostsTab() {
  const table = new Table([
    { key: 'name', label: 'Name', width: '22%' },
    { key: 'description', label: 'Description', width: '30%' },
    { key: 'tags', label: 'Tags', width: '15%', text: (v) => (v.tags || []).join(', ') },
    { key: 'messages_ready', label: 'Ready', num: true, width: '10%', text: (v) => num(v.messages_ready) },
    { key: 'messages_unacknowledged', label: 'Unacked', num: true, width: '10%', text: (v) => num(v.messages_unacknowledged) },
    { key: 'del', label: '', width: '13%', cell: (v) => del('virtual host', 'virtual host ' + v.name + ' and everything in it',
      '/vhosts/' + enc(v.name), () => state.reloadVHosts()) },
  ], { rowKey: (v) => v.name, label: 'Virtual hosts' });
  const name = h('input', { name: 'name', required: true });
  const desc = h('input', { name: 'description' });
  const tags = h('input', { name: 'tags' });
  const f = form('vhost', [...field('Name', name), ...field('Description', desc), ...field('Tags', tags)], 'Add virtual host', async () => {
    if (await act(() => api('/vhosts/' + enc(name.value), { method: 'PUT', body: { description: desc.value, tags: tags.value } }),
      `Virtual host ${name.value} added`)) { name.value = ''; desc.value = ''; tags.value = ''; state.reloadVHosts(); refresh(); }
  });
  return {
    el: h('div', null, h('section', { class: 'panel' }, h('h2', null, 'Virtual hosts'), table.el),
      h('section', { class: 'panel' }, h('h2', null, 'Add a virtual host'), f)),
    async refresh() { table.update(await api('/vhosts')); },
  };
}

function permissionsTab() {
  const table = new Table([
    { key: 'user', label: 'User', width: '18%' },
    { key: 'vhost', label: 'Virtual host', width: '18%' },
    { key: 'configure', label: 'Configure', width: '17%' },
    { key: 'write', label: 'Write', width: '17%' },
    { key: 'read', label: 'Read', width: '17%' },
    { key: 'del', label: '', width: '13%', cell: (p) => h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => edit(p) }, 'Edit'),
      del('permission', `${p.user}'s permissions in ${p.vhost}`, '/permissions' + vpath(p.vhost, p.user))) },
  ], { rowKey: (p) => p.vhost + '\u0000' + p.user, label: 'Permissions' });
  const user = h('select', { name: 'user', required: true });
  const vhost = h('select', { name: 'vhost', required: true });
  const conf = h('input', { name: 'configure', value: '.*' });
  const write = h('input', { name: 'write', value: '.*' });
  const read = h('input', { name: 'read', value: '.*' });
  const f = form('permission', [...field('User', user), ...field('Virtual host', vhost), ...field('Configure', conf, 'regular expression'),
    ...field('Write', write), ...field('Read', read)], 'Set permission', async () => {
    if (await act(() => api('/permissions' + vpath(vhost.value, user.value), {
      method: 'PUT', body: { configure: conf.value, write: write.value, read: read.value },
    }), `Permissions of ${user.value} in ${vhost.value} set`)) refresh();
  });
  function edit(p) { user.value = p.user; vhost.value = p.vhost; conf.value = p.configure; write.value = p.write; read.value = p.read; conf.focus(); }
  return {
    el: h('div', null, h('section', { class: 'panel' }, h('h2', null, 'Permissions'), table.el),
      h('section', { class: 'panel' }, h('h2', null, 'Set a permission'), f)),
    async refresh() {
      const [perms, users] = await Promise.all([api('/permissions'), api('/users?columns=name')]);
      table.update(perms);
      if (user.options.length !== users.length) {
        const keep = user.value;
        user.replaceChildren(...users.map((u) => h('option', { value: u.name }, u.name)));
        if (keep) user.value = keep;
      }
      if (vhost.options.length !== state.vhosts.length) vhost.replaceChildren(...state.vhosts.map((v) => h('option', { value: v }, v)));
    },
  };
}

function policiesTab() {
  const table = new Table([
    { key: 'vhost', label: 'Virtual host', width: '12%' },
    { key: 'name', label: 'Name', width: '16%' },
    { key: 'pattern', label: 'Pattern', width: '15%' },
    { key: 'apply-to', label: 'Apply to', width: '10%' },
    { key: 'definition', label: 'Definition', width: '28%', text: (p) => args(p.definition) },
    { key: 'priority', label: 'Priority', num: true, width: '6%' },
    { key: 'del', label: '', width: '13%', cell: (p) => h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => edit(p) }, 'Edit'),
      del('policy', `policy ${p.name} in ${p.vhost}`, '/policies' + vpath(p.vhost, p.name))) },
  ], { rowKey: (p) => p.vhost + '\u0000' + p.name, label: 'Policies' });
  const vhost = h('select', { name: 'vhost' });
  const name = h('input', { name: 'name', required: true });
  const pattern = h('input', { name: 'pattern', required: true, placeholder: '^jobs\\.' });
  const applyTo = h('select', { name: 'apply-to' }, ['all', 'queues', 'exchanges', 'classic_queues', 'quorum_queues', 'streams'].map((v) => h('option', { value: v }, v)));
  const priority = h('input', { name: 'priority', type: 'number', value: 0, style: 'width:8ch' });
  const def = h('textarea', { name: 'definition', rows: 4, placeholder: '{"max-length": 100000, "dead-letter-exchange": "dlx"}' });
  const f = form('policy', [...field('Virtual host', vhost), ...field('Name', name), ...field('Pattern', pattern, 'regular expression'),
    ...field('Apply to', applyTo), ...field('Priority', priority), ...field('Definition', def, 'JSON object')], 'Save policy', async () => {
    let d;
    try { d = JSON.parse(def.value || '{}'); } catch (err) { return act(() => { throw new Error('Definition: ' + err.message); }); }
    if (await act(() => api('/policies' + vpath(vhost.value, name.value), {
      method: 'PUT', body: { pattern: pattern.value, 'apply-to': applyTo.value, priority: Number(priority.value), definition: d },
    }), `Policy ${name.value} saved`)) refresh();
  });
  function edit(p) {
    vhost.value = p.vhost; name.value = p.name; pattern.value = p.pattern; applyTo.value = p['apply-to'];
    priority.value = p.priority; def.value = JSON.stringify(p.definition, null, 1); pattern.focus();
  }
  return {
    el: h('div', null, h('section', { class: 'panel' }, h('h2', null, 'Policies'), table.el),
      h('section', { class: 'panel' }, h('h2', null, 'Add or change a policy'), f)),
    async refresh() {
      if (vhost.options.length !== state.vhosts.length) vhost.replaceChildren(...state.vhosts.map((v) => h('option', { value: v }, v)));
      table.update(await api('/policies'));
    },
  };
}

function definitionsTab() {
  const scope = h('select', null, h('option', { value: '' }, 'Whole broker'), state.vhosts.map((v) => h('option', { value: v }, 'Virtual host ' + v)));
  const exportBtn = h('button', { type: 'button', class: 'primary', 'data-action': 'export' }, 'Download definitions');
  exportBtn.onclick = async () => {
    const d = await act(() => api('/definitions' + (scope.value ? vpath(scope.value) : '')));
    if (d) downloadJSON(d, `warren-definitions${scope.value ? '-' + scope.value.replace(/[^\w.-]/g, '_') : ''}.json`);
  };
  const file = h('input', { type: 'file', accept: 'application/json,.json' });
  const text = h('textarea', { rows: 6, placeholder: 'or paste a definitions document (RabbitMQ\'s format)', 'data-field': 'definitions' });
  const iscope = h('select', null, h('option', { value: '' }, 'Whole broker'), state.vhosts.map((v) => h('option', { value: v }, 'Into virtual host ' + v)));
  const result = h('p', { class: 'muted', 'aria-live': 'polite' });
  file.addEventListener('change', async () => { if (file.files[0]) text.value = await file.files[0].text(); });
  const importBtn = h('button', { type: 'button', class: 'primary', 'data-action': 'import' }, 'Import definitions');
  importBtn.onclick = async () => {
    let doc;
    try { doc = JSON.parse(text.value); } catch (err) { return act(() => { throw new Error('Not JSON: ' + err.message); }); }
    const counts = ['users', 'vhosts', 'permissions', 'policies', 'queues', 'exchanges', 'bindings']
      .filter((k) => Array.isArray(doc[k]) && doc[k].length).map((k) => `${doc[k].length} ${k}`).join(', ') || 'nothing';
    if (!(await confirmDialog('Import definitions', `Import ${counts}? Existing objects with the same names are updated.`, 'Import', false))) return;
    if (await act(() => api('/definitions' + (iscope.value ? vpath(iscope.value) : ''), { method: 'POST', body: doc }), 'Definitions imported')) {
      setText(result, `Imported ${counts}.`);
      state.reloadVHosts();
    }
  };
  return {
    el: h('div', null,
      h('section', { class: 'panel' }, h('h2', null, 'Export'),
        h('p', { class: 'muted' }, 'Users, virtual hosts, permissions, policies, parameters, exchanges, queues and bindings, in RabbitMQ\'s format.'),
        h('div', { class: 'row' }, scope, exportBtn)),
      h('section', { class: 'panel' }, h('h2', null, 'Import'),
        h('p', { class: 'muted' }, 'A definitions file from Warren or RabbitMQ (rabbitmqctl export_definitions or the management UI).'),
        h('div', { class: 'row' }, file, iscope), text, h('div', { class: 'row' }, importBtn), result)),
  };
}

function limitsTab() {
  const dl = h('dl', { class: 'kv' });
  const kv = {};
  for (const [k, label] of [['mem', 'Memory used'], ['memlimit', 'Memory high watermark'], ['free', 'Disk free'], ['freelimit', 'Disk free limit']]) {
    const dd = h('dd');
    dl.append(h('dt', null, label), dd);
    kv[k] = dd;
  }
  const mem = h('input', { placeholder: '0.4 or absolute 2GB' });
  const disk = h('input', { placeholder: '50MB or mem_relative 1.0' });
  const fm = form('memory-limit', field('Memory high watermark', mem), 'Set', async () => {
    if (await act(() => api('/warren/memory-high-watermark', { method: 'PUT', body: { value: mem.value } }), 'Memory high watermark set')) refresh();
  });
  const fd = form('disk-limit', field('Disk free limit', disk), 'Set', async () => {
    if (await act(() => api('/warren/disk-free-limit', { method: 'PUT', body: { value: disk.value } }), 'Disk free limit set')) refresh();
  });
  return {
    el: h('div', null, h('section', { class: 'panel' }, h('h2', null, 'Resource alarms'),
      h('p', { class: 'muted' }, 'Crossing either limit blocks publishing connections until the broker is back under it, as in RabbitMQ.'), dl),
    h('div', { class: 'grid2' }, h('section', { class: 'panel' }, fm), h('section', { class: 'panel' }, fd))),
    async refresh() {
      const [n] = await api('/nodes');
      const flag = (on) => (on ? '  (alarm)' : '');
      setText(kv.mem, Intl.NumberFormat('en-US').format(n.mem_used) + ' bytes' + flag(n.mem_alarm));
      setText(kv.memlimit, Intl.NumberFormat('en-US').format(n.mem_limit) + ' bytes');
      setText(kv.free, Intl.NumberFormat('en-US').format(n.disk_free) + ' bytes' + flag(n.disk_free_alarm));
      setText(kv.freelimit, Intl.NumberFormat('en-US').format(n.disk_free_limit) + ' bytes');
    },
  };
}
