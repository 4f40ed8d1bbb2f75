// stanzahook delivery console. Plain ES2020 under CSP default-src 'self'; data only as text nodes.
'use strict';
(() => {
const $ = (id) => document.getElementById(id);
const PAGE = 50, RETRY_MS = 2000, STALE_MS = 45000; // the server pings every 15 s
const MARK = { delivered: '✓', answered: '✓', failed: '✗', rejected: '✗', dropped: '–', pending: '…' };
const NOT_KEPT = 'not kept (deliveries.keep_bodies is off)';

let token = null; // the API token lives only here: never in a URL or storage
let authed = false;
const rows = new Map(); // id -> row element
let next = null; // `next` of the last page
let filt = { status: '', sender: '' }; // the filters the list was queried with
let listGen = 0, inflight = 0;
const replay = new Map(); // live events that came during list fetches
let live = null, retryTimer = 0;
let detailId = null, detailGen = 0, detail = null;

// h('span', 'cls' | {props, data: {dataset}}, ...children): strings become text nodes
function h(tag, p, ...kids) {
  const e = document.createElement(tag);
  const { data, ...props } = typeof p === 'string' ? { className: p } : p || {};
  Object.assign(e, props);
  if (data) Object.assign(e.dataset, data);
  e.append(...kids.filter((k) => k != null).map((k) => (k instanceof Node ? k : String(k))));
  return e;
}
const text = (id, t, cls) => { const e = $(id); e.textContent = t; if (cls != null) e.className = cls; return e; };
const st = (s) => (Object.prototype.hasOwnProperty.call(MARK, s) ? s : 'unknown');
const mark = (s) => `${MARK[s] || '?'} ${s}`;
const pad = (n, w = 2) => String(n).padStart(w, '0');
const date = (at) => { const d = new Date(at); return isNaN(d) ? null : d; };
const hms = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
const full = (at, d = date(at)) => (d ? `${d.toLocaleDateString()} ${hms(d)}.${pad(d.getMilliseconds(), 3)}` : String(at));
const ms = (n) => (typeof n === 'number' ? (n < 10 ? n.toFixed(1) : Math.round(n)) + ' ms' : '');
const rowId = (e) => Number(e.dataset.id);
const link = (id) => h('button', { className: 'link', type: 'button', data: { open: id } }, '#' + id);

// Re-indents JSON text without parsing its values (big numbers stay exact).
function prettyJson(t) {
  try { JSON.parse(t); } catch { return String(t); }
  let out = '', ind = 0, inStr = false, esc = false;
  const nl = () => '\n' + '  '.repeat(ind);
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (inStr) {
      out += c;
      if (esc) esc = false; else if (c === '\\') esc = true; else if (c === '"') inStr = false;
    } else if (c === '{' || c === '[') {
      let j = i + 1;
      while (' \t\n\r'.includes(t[j] || 'x')) j++;
      if (t[j] === (c === '{' ? '}' : ']')) { out += c + t[j]; i = j; } else { ind++; out += c + nl(); }
    } else if (c === '}' || c === ']') { ind--; out += nl() + c; }
    else if (c === ',') out += ',' + nl();
    else if (c === ':') out += ': ';
    else if (!' \t\n\r'.includes(c)) { out += c; inStr = c === '"'; }
  }
  return out;
}

const opts = (accept, more) => ({ cache: 'no-store', credentials: 'omit', ...more,
  headers: token === null ? { Accept: accept } : { Accept: accept, Authorization: 'Bearer ' + token } });
async function failure(res, extra) {
  let msg = `HTTP ${res.status}`;
  try { const b = await res.json(); if (b && b.error) msg = String(b.error); } catch { /* not JSON */ }
  return Object.assign(new Error(msg), { status: res.status }, extra);
}
async function api(path, method = 'GET') {
  const res = await fetch(path, opts('application/json', { method })).catch((e) => {
    throw Object.assign(new Error('cannot reach the server: ' + e.message), { status: 0 });
  });
  if (res.ok) return res.json();
  const err = await failure(res);
  if (authed && (res.status === 401 || res.status === 403)) logout(err.message);
  throw err;
}

// ---- login
function showLogin(msg) {
  $('boot').hidden = $('app').hidden = $('live').hidden = true;
  $('login').hidden = false;
  text('login-error', msg || '').hidden = !msg;
  $('token').focus();
}
async function onLogin(ev) {
  ev.preventDefault();
  if (!$('token').value) return;
  $('login-error').hidden = $('login-submit').disabled = true;
  token = $('token').value;
  try {
    const page = await api(query());
    $('token').value = '';
    enter(page);
  } catch (e) {
    token = null;
    text('login-error', e.message).hidden = false;
  }
  $('login-submit').disabled = false;
}
function enter(page) {
  authed = true;
  $('boot').hidden = $('login').hidden = true;
  $('app').hidden = $('live').hidden = false;
  renderPage(page, true);
  connectLive();
}
function logout(msg) {
  authed = false;
  token = null;
  stopLive();
  closeDetail();
  rows.clear();
  $('list').replaceChildren();
  showLogin(msg);
}

// ---- list
function query(before) {
  const p = new URLSearchParams({ limit: PAGE });
  if (before != null) p.set('before', before);
  if (filt.status) p.set('status', filt.status);
  if (filt.sender) p.set('sender', filt.sender);
  return '/deliveries?' + p;
}
function matches(s) {
  const f = filt.sender.toLowerCase(), snd = String(s.sender || '').toLowerCase();
  return (!filt.status || s.status === filt.status) && (!f || snd === f || snd.split('/')[0] === f); // full or bare JID
}
function fillRow(row, s) {
  const c = st(s.status), d = date(s.at);
  Object.assign(row.dataset, { id: s.id, status: s.status, kind: s.kind || '' });
  row.className = `row st-${c}${s.id === detailId ? ' selected' : ''}`;
  row.title = `#${s.id} ${s.status} — ${full(s.at)}${s.error ? '\n' + s.error : ''}`;
  row.replaceChildren(
    h('span', { className: 'mark', title: s.status }, MARK[s.status] || '?'),
    h('span', 'time', d ? hms(d) : s.at), h('span', 'sender', s.sender), h('span', 'kind', s.kind),
    h('span', s.http_status >= 400 ? 'http bad' : 'http', s.http_status || '—'),
    h('span', 'attempts', s.attempts > 1 ? '×' + s.attempts : ''), h('span', 'took', ms(s.took_ms)),
    h('span', 'tags',
      s.redelivery_of != null ? h('span', 'tag', `redelivery of #${s.redelivery_of}`) : null,
      s.redelivered_as != null ? h('span', 'tag', `redelivered as #${s.redelivered_as}`) : null,
      s.error && (c === 'failed' || c === 'rejected') ? h('span', 'err', s.error) : null));
}
function upsert(s, fromLive) {
  if (!s || typeof s.id !== 'number') return;
  const cur = rows.get(s.id), list = $('list'), last = list.lastElementChild;
  if (!matches(s)) { if (cur) { cur.remove(); rows.delete(s.id); } return; }
  if (cur) return fillRow(cur, s);
  // older than all loaded while more exist: it comes with "Load older"
  if (fromLive && next !== null && last && s.id < rowId(last)) return;
  const row = h('button', { type: 'button', data: { testid: 'delivery-row' } });
  fillRow(row, s);
  rows.set(s.id, row);
  if (!last || rowId(last) > s.id) return list.append(row);
  list.insertBefore(row, [...list.children].find((r) => rowId(r) < s.id) || null);
}
function renderPage(page, replace) {
  if (replace) { rows.clear(); $('list').replaceChildren(); }
  for (const s of page.deliveries || []) upsert(s, false);
  next = page.next != null ? page.next : null;
  $('load-older').hidden = next === null;
  empty();
}
const empty = () => {
  text('empty', filt.status || filt.sender ? 'no deliveries match the filters' : 'no deliveries yet').hidden = rows.size > 0;
};
function listMsg(t, bad) {
  text('list-msg', t, bad ? 'error-text' : 'muted');
}
async function fetchList(before, apply) {
  const gen = listGen;
  inflight++;
  try {
    const page = await api(query(before));
    if (gen !== listGen || !authed) return;
    apply(page);
    for (const s of replay.values()) upsert(s, true); // newer than the page
    empty();
    listMsg('');
  } catch (e) {
    if (gen === listGen && authed) listMsg(e.message, true);
  } finally {
    if (--inflight === 0) replay.clear();
  }
}
function requery() {
  const f = { status: $('status-filter').value, sender: $('sender-filter').value.trim() };
  if (f.status === filt.status && f.sender === filt.sender) return;
  filt = f;
  listGen++;
  listMsg('loading…');
  fetchList(null, (page) => renderPage(page, true));
}
async function loadOlder() {
  if (next === null) return;
  $('load-older').disabled = true;
  await fetchList(next, (page) => renderPage(page, false));
  $('load-older').disabled = false;
}
// on each (re)connect of the live stream: the first page again, for what was missed
function resync() {
  fetchList(null, (page) => {
    const ds = page.deliveries || [], first = $('list').firstElementChild;
    if (!first || (page.next != null && ds.length && ds[ds.length - 1].id > rowId(first))) renderPage(page, true); // a gap
    else for (const s of ds) upsert(s, false);
  });
}

// ---- live: fetch() + ReadableStream + a small SSE parser (EventSource cannot send headers)
function sseParser(dispatch) {
  let buf = '', ev = '', data = [];
  function line(l) {
    if (l === '') {
      if (data.length) dispatch(ev || 'message', data.join('\n'));
      ev = '';
      data = [];
    } else if (l[0] === ':') {
      dispatch(':', l.slice(1).trim());
    } else {
      const c = l.indexOf(':'), field = c < 0 ? l : l.slice(0, c);
      const val = c < 0 ? '' : l.slice(l[c + 1] === ' ' ? c + 2 : c + 1);
      if (field === 'event') ev = val; else if (field === 'data') data.push(val);
    }
  }
  return (chunk) => {
    buf += chunk;
    for (let m; (m = /\r\n|\n|\r/.exec(buf)) && !(m[0] === '\r' && m.index === buf.length - 1);) { // a \r may be half a \r\n
      line(buf.slice(0, m.index));
      buf = buf.slice(m.index + m[0].length);
    }
  };
}
function setLive(state, t, title = '') {
  Object.assign(text('live', t), { title }).dataset.state = state;
}
function onSse(type, data) {
  if (type === ':') {
    if (data === 'live') { setLive('on', 'live'); resync(); }
    return;
  }
  let s;
  try { s = type === 'delivery' && JSON.parse(data); } catch { return; }
  if (!s || typeof s.id !== 'number') return;
  if (inflight) replay.set(s.id, s);
  upsert(s, true);
  empty();
  if (s.id === detailId) openDetail(s.id, true);
}
async function runLive(ctl) {
  const res = await fetch('/deliveries/live', opts('text/event-stream', { signal: ctl.signal }));
  if (res.status === 401 || res.status === 403) throw await failure(res, { auth: true });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
  const reader = res.body.getReader(), dec = new TextDecoder(), feed = sseParser(onSse);
  for (;;) {
    clearTimeout(ctl.dog);
    ctl.dog = setTimeout(() => ctl.abort(), STALE_MS);
    const { value, done } = await reader.read();
    if (done) throw new Error('the stream ended');
    feed(dec.decode(value, { stream: true }));
  }
}
function connectLive() {
  clearTimeout(retryTimer);
  if (live) live.abort();
  const ctl = (live = new AbortController());
  runLive(ctl).catch((err) => {
    clearTimeout(ctl.dog);
    if (live !== ctl || !authed) return; // replaced or logged out
    if (err.auth) return logout(err.message);
    setLive('wait', 'reconnecting…', err.message);
    retryTimer = setTimeout(connectLive, RETRY_MS);
  });
}
function stopLive() {
  clearTimeout(retryTimer);
  const c = live;
  live = null;
  if (c) c.abort();
  setLive('wait', 'connecting…');
}

// ---- detail
function select(id) {
  for (const r of rows.values()) r.classList.toggle('selected', rowId(r) === id);
}
function closeDetail() {
  detailId = detail = null;
  detailGen++;
  $('detail').hidden = true;
  $('app').classList.remove('has-detail');
  select(null);
}
function redeliverResult(node, bad, newId) {
  const r = $('redeliver-result');
  r.replaceChildren(...(node ? [node] : []));
  r.classList.toggle('error-text', !!bad);
  if (newId != null) r.dataset.newId = newId; else delete r.dataset.newId;
}
async function openDetail(id, quiet) {
  if (!Number.isFinite(id)) return;
  const gen = ++detailGen, pane = $('detail');
  if (!quiet) {
    if (id !== detailId) redeliverResult(null);
    detailId = id;
    select(id);
    pane.hidden = false;
    $('app').classList.add('has-detail');
    if (rows.has(id)) rows.get(id).scrollIntoView({ block: 'nearest' });
    if (!detail || detail.id !== id) {
      delete pane.dataset.id;
      text('detail-status', '…', 'badge');
      text('detail-title', `#${id} loading…`);
      for (const k of ['detail-meta', 'request', 'answer', 'replies', 'filter-trail']) $(k).replaceChildren();
      $('detail-error').hidden = $('redeliver').disabled = true;
    }
  }
  let d;
  try {
    d = await api(`/deliveries/${id}`);
  } catch (e) {
    if (gen === detailGen && !quiet) { text('detail-title', `#${id}`); text('detail-error', e.message).hidden = false; }
    return;
  }
  if (gen !== detailGen || detailId !== id) return;
  renderDetail(d);
  const top = pane.getBoundingClientRect().top;
  if (!quiet && (top < 0 || top > window.innerHeight - 120)) pane.scrollIntoView({ block: 'start' });
}
function renderDetail(d) {
  detail = d;
  $('detail').dataset.id = d.id;
  text('detail-status', mark(d.status), `badge st-${st(d.status)}`);
  text('detail-title', `#${d.id} · ${d.kind || ''}`);

  const pairs = [
    ['time', h('time', { dateTime: d.at || '' }, full(d.at))],
    ['route', h('span', 'mono', d.sender), ' → ', h('span', 'mono', d.to)],
    d.stanza_id != null && ['stanza id', h('span', 'mono', d.stanza_id)],
    ['HTTP', d.http_status || 'no HTTP answer'],
    ['attempts', d.attempts],
    ['took', ms(d.took_ms) + (d.webhook_ms != null ? ` (webhook ${ms(d.webhook_ms)})` : '')],
    (d.redelivery_of != null || d.redelivered_as != null) && ['redelivery',
      ...(d.redelivery_of != null ? ['redelivery of ', link(d.redelivery_of)] : []),
      ...(d.redelivered_as != null ? [d.redelivery_of != null ? ' · ' : '', 'redelivered as ', link(d.redelivered_as)] : [])],
  ];
  $('detail-meta').replaceChildren(...pairs.filter(Boolean).flatMap(([k, ...v]) => [h('dt', null, k), h('dd', null, ...v)]));

  const btn = $('redeliver');
  btn.disabled = d.redelivered_as != null || !d.redeliverable;
  btn.title = d.redelivered_as != null ? `already redelivered as #${d.redelivered_as}`
    : !d.redeliverable ? 'its stanza was not kept, so it cannot be redelivered'
      : 'send the kept stanza through the filters and the webhook again';
  text('detail-error', d.error || '').hidden = !d.error;

  const body = (id, v, none) => text(id, !d.bodies ? NOT_KEPT : v == null ? none : prettyJson(v),
    !d.bodies || v == null ? 'code none' : 'code');
  body('request', d.request, 'none (no webhook call was made)');
  body('answer', d.answer, 'no answer');
  const reps = d.bodies && Array.isArray(d.replies) ? d.replies : [];
  $('replies').replaceChildren(...(reps.length ? reps.map((x) => h('pre', 'code', x))
    : [h('p', 'muted', d.bodies ? 'no replies' : NOT_KEPT)]));

  const fs = Array.isArray(d.filters) ? d.filters : [];
  const tr = (cell, ...cs) => h('tr', null, ...cs.map(([c, v]) => h(cell, c, v)));
  $('filter-trail').replaceChildren(fs.length ? h('table', 'trail',
    h('thead', null, tr('th', [null, 'filter'], [null, 'hook'], [null, 'verdict'], [null, 'ms'])),
    h('tbody', null, ...fs.map((f) => tr('td', ['mono', f.filter], [null, f.hook],
      ['v-' + (/^[a-z]+$/.test(f.verdict) ? f.verdict : 'other'), f.verdict],
      ['num', typeof f.ms === 'number' ? f.ms.toFixed(2) : ''])))) : h('p', 'muted', 'no filters'));
}
async function onRedeliver() {
  const id = detailId, btn = $('redeliver');
  if (id == null) return;
  btn.disabled = true;
  redeliverResult(h('span', 'muted', 'redelivering…'));
  try {
    const r = await api(`/deliveries/${id}/redeliver`, 'POST');
    if (detailId !== id) return;
    redeliverResult(h('span', 'ok', 'redelivering as ', link(r.id)), false, r.id);
    btn.title = `redelivered as #${r.id}`;
  } catch (e) {
    if (detailId !== id) return;
    redeliverResult(h('span', null, e.message), true);
    btn.disabled = !(detail && detail.id === id && detail.redeliverable && detail.redelivered_as == null);
  }
}

// ---- wiring
let deb = 0;
$('login').addEventListener('submit', onLogin);
$('status-filter').addEventListener('change', requery);
$('sender-filter').addEventListener('input', () => { clearTimeout(deb); deb = setTimeout(requery, 300); });
$('sender-filter').addEventListener('keydown', (e) => { if (e.key === 'Enter') { clearTimeout(deb); requery(); } });
$('load-older').addEventListener('click', loadOlder);
$('list').addEventListener('click', (e) => { const r = e.target.closest('.row'); if (r) openDetail(rowId(r)); });
document.addEventListener('click', (e) => { const a = e.target.closest('[data-open]'); if (a) openDetail(Number(a.dataset.open)); });
$('detail-close').addEventListener('click', closeDetail);
$('redeliver').addEventListener('click', onRedeliver);
// The server says on the page whether it wants a token: `open` (stanzahook dev without one) has
// no login, `off` (no api.token) cannot serve the deliveries at all; asking first would log a
// refusal on every visit.
const login = document.documentElement.dataset.login;
if (login === 'open') api(query()).then(enter, (e) => showLogin(e.message));
else if (login === 'off') showLogin('The deliveries are off: the operator API has no token (set api.token or STANZAHOOK_API_TOKEN).');
else showLogin('');
})();
