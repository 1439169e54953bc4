/**
 * GET /: the status page — every cluster with its holder, epoch, lease, nodes and resources, and
 * the phases of its last takeover, updated live. One self-contained document (no CDN: storage
 * networks are often air-gapped). It holds no data itself: the browser signs in with an API key
 * (a read-only one is enough: the page only reads), kept in the tab's sessionStorage and sent as
 * a header, never in a URL. Live updates come from the event stream, the key offered as a
 * WebSocket subprotocol (control-plane/event-stream.ts); where there is no stream (Lambda), or
 * for clusters past the stream limit, the page polls every second.
 */
import { Hono } from 'hono';

/** Streams a page opens at most (the control plane allows 5 per key: one is left for the CLI). */
export const PAGE_STREAMS = 4;

const STYLE = `
:root { color-scheme: light dark; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #6e7781; }
* { box-sizing: border-box; }
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; padding: 12px; max-width: 1100px; margin-inline: auto; }
header { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; justify-content: space-between; }
h1 { font-size: 1.2em; margin: 0; }
.cluster { border: 1px solid #8884; border-radius: 8px; padding: 10px 12px; margin: 12px 0; }
.cluster h2 { font-size: 1.1em; margin: 0 0 6px; display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.badge { border-radius: 4px; padding: 1px 6px; font-size: .85em; font-weight: 600; color: #fff; background: var(--muted); }
.badge.ok { background: var(--ok); } .badge.warn { background: var(--warn); } .badge.bad { background: var(--bad); }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid #8882; vertical-align: top; }
th { font-weight: 600; font-size: .85em; color: var(--muted); }
.muted { color: var(--muted); font-size: .85em; }
.timeline { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: .9em; }
form { display: flex; flex-wrap: wrap; gap: 8px; margin: 24px 0; }
input { font: inherit; padding: 6px; min-width: 18em; flex: 1; }
button { font: inherit; padding: 6px 12px; }
.error { color: var(--bad); }
@media (max-width: 600px) { .wide { display: none; } body { font-size: 14px; } }
`;

const SCRIPT = `
const KEY = 'nfs-ha.key';
const $ = (tag, attrs = {}, ...children) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
};
const secs = (ms) => (ms === null || ms === undefined ? '—' : (ms / 1000).toFixed(1) + ' s');
const state = { clusters: new Map(), streams: new Map(), polling: new Set(), timer: null };

async function api(path) {
  const res = await fetch(path, { headers: { authorization: 'Bearer ' + sessionStorage.getItem(KEY) } });
  if (res.status === 401) { signOut('The key was refused (revoked or mistyped): sign in again.'); throw new Error('401'); }
  if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
  return res.json();
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  for (const ws of state.streams.values()) ws.close();
  state.streams.clear();
  clearInterval(state.timer);
  showSignIn(message);
}

function showSignIn(message = '') {
  const main = document.querySelector('main');
  const input = $('input', { type: 'password', name: 'key', placeholder: 'API key (nfsha_op_…; read-only is enough)', autocomplete: 'off', 'aria-label': 'API key' });
  const form = $('form', {}, input, $('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    start().catch((err) => err.message !== '401' && signOut(err.message));
  });
  main.replaceChildren($('p', { class: 'error', role: 'alert' }, message), form, $('p', { class: 'muted' }, 'The key stays in this tab (sessionStorage) and goes only into request headers.'));
  document.querySelector('#who').replaceChildren();
}

async function clusterIds() {
  const ids = [];
  let cursor = null;
  do {
    const page = await api('/v1/clusters?limit=100' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    ids.push(...page.clusters.map((c) => c.id));
    cursor = page.cursor;
  } while (cursor);
  return ids;
}

/** The phases of the current epoch's takeover, from its events. */
function takeover(events) {
  const grant = events.find((e) => e.type === 'lease.granted');
  if (!grant) return null;
  const steps = [];
  const fenced = events.find((e) => e.type === 'fencing.confirmed');
  if (fenced) steps.push(['fence', fenced.data.durationMs ?? null, fenced.at - grant.at]);
  for (const e of events) {
    if (e.type === 'phase.reported' && e.data.direction === 'start' && e.data.status === 'succeeded') steps.push([e.data.phase, e.data.durationMs ?? null, e.at - grant.at, e.data.commands ?? []]);
  }
  return { grant, steps };
}

async function refresh(id) {
  const status = await api('/v1/clusters/' + encodeURIComponent(id) + '/status');
  const events = status.lease.epoch > 0
    ? (await api('/v1/clusters/' + encodeURIComponent(id) + '/events?order=newest&limit=200&epoch=' + status.lease.epoch)).events.reverse()
    : [];
  state.clusters.set(id, { status, events, at: Date.now() });
  render(id);
}

function badge(s) {
  const l = s.lease;
  if (l.failsafe) return ['FAILSAFE: ' + l.holder, 'warn'];
  if (l.state === 'held') return ['ACTIVE: ' + l.holder, 'ok'];
  if (l.state === 'fencing') return ['FENCING: ' + l.holder, 'warn'];
  if (l.state === 'expired') return ['EXPIRED: nobody serves', 'bad'];
  return ['VACANT: nobody serves', 'bad'];
}

function render(id) {
  const { status: s, events } = state.clusters.get(id);
  const [text, kind] = badge(s);
  const title = $('h2', {}, s.clusterId, $('span', { class: 'badge ' + kind, 'data-role': 'holder' }, text), $('span', { class: 'muted', 'data-role': 'epoch' }, 'epoch ' + s.lease.epoch));
  if (s.maintenance) title.append($('span', { class: 'badge warn' }, 'MAINTENANCE'));
  if (s.switchover) title.append($('span', { class: 'badge warn' }, 'switchover to ' + s.switchover.to));
  const rows = s.nodes.map((n) => {
    const res = Object.entries(n.resources);
    const bad = res.filter(([, st]) => st !== 'running');
    return $('tr', { 'data-node': n.id },
      $('td', {}, n.id + (n.isHolder ? ' ★' : '')),
      $('td', {}, n.role ?? '—'),
      $('td', {}, n.lastHeartbeatAgoMs === null ? 'never' : secs(n.lastHeartbeatAgoMs) + ' ago'),
      $('td', { class: 'wide' }, n.peerReachable === null ? '—' : n.peerReachable ? 'yes' : 'NO'),
      $('td', {}, res.length === 0 ? '—' : bad.length === 0 ? res.length + ' running' : bad.map(([r, st]) => r + ' ' + st.toUpperCase()).join(', ')),
      $('td', { class: 'wide muted' }, n.reservationKey),
      $('td', { class: 'wide muted' }, n.agent ? n.agent.version : '—'));
  });
  const table = $('table', {}, $('tr', {}, ...['node', 'role', 'heard', 'sees peer', 'resources', 'reservation key', 'agent'].map((h, i) => $('th', i === 3 || i >= 5 ? { class: 'wide' } : {}, h))), ...rows);
  const t = takeover(events);
  const lease = s.lease.holder === null ? 'no holder' : s.lease.expiresInMs >= 0 ? 'renewed ' + secs(s.lease.renewedAgoMs) + ' ago, expires in ' + secs(s.lease.expiresInMs) : 'lapsed ' + secs(-s.lease.expiresInMs) + ' ago';
  const parts = [title, $('div', { class: 'muted' }, lease + (s.lease.failsafe ? '; serving on ' + s.lease.failsafe.vouchedBy + "'s promise since " + s.lease.failsafe.since : '')), table];
  if (t) {
    parts.push($('div', { class: 'muted' }, 'Epoch ' + t.grant.epoch + ': granted to ' + t.grant.node + ' (' + t.grant.data.reason + (t.grant.data.previousHolder ? ', from ' + t.grant.data.previousHolder : '') + ') at ' + new Date(t.grant.at).toISOString()));
    parts.push($('div', { class: 'timeline', 'data-role': 'timeline' }, ...t.steps.map(([phase, ms, after, commands = []]) =>
      // Hovering a step shows its commands and their times: where a slow takeover went.
      $('span', commands.length ? { title: commands.map((c) => secs(c.ms) + '  ' + c.command).join('\\n') } : {}, phase + ' ' + secs(ms) + ' (+' + secs(after) + ')'))));
  }
  parts.push($('div', { class: 'muted' }, state.streams.get(id)?.readyState === 1 ? 'live' : 'polling every second'));
  const card = $('section', { class: 'cluster', id: 'cluster-' + id }, ...parts);
  const old = document.getElementById('cluster-' + id);
  if (old) old.replaceWith(card); else document.querySelector('main').append(card);
}

function stream(id) {
  const url = location.origin.replace(/^http/, 'ws') + '/v1/clusters/' + encodeURIComponent(id) + '/events/stream';
  const ws = new WebSocket(url, ['nfs-ha', 'nfs-ha.bearer.' + sessionStorage.getItem(KEY)]);
  let pending = null;
  ws.onmessage = (m) => {
    // A grant is shown at once from the event itself; the full status follows.
    const e = JSON.parse(m.data);
    const known = state.clusters.get(id);
    if (e.type === 'lease.granted' && known && e.epoch > known.status.lease.epoch) {
      known.status = { ...known.status, lease: { ...known.status.lease, holder: e.node, epoch: e.epoch, state: 'fencing', failsafe: null, expiresInMs: 0, renewedAgoMs: 0 } };
      known.events = [e];
      render(id);
    }
    clearTimeout(pending);
    pending = setTimeout(() => refresh(id).catch(() => {}), 50);
  };
  ws.onopen = () => { state.polling.delete(id); refresh(id).catch(() => {}); };
  ws.onclose = () => {
    if (state.streams.get(id) !== ws) return;
    state.streams.delete(id);
    state.polling.add(id);
    if (sessionStorage.getItem(KEY)) setTimeout(() => sessionStorage.getItem(KEY) && !state.streams.has(id) && state.streams.set(id, stream(id)), 5000);
  };
  return ws;
}

async function start() {
  const ids = await clusterIds();
  document.querySelector('main').replaceChildren(ids.length === 0 ? $('p', {}, 'No clusters yet.') : '');
  document.querySelector('#who').replaceChildren($('button', { type: 'button' }, 'Sign out'));
  document.querySelector('#who button').addEventListener('click', () => signOut(''));
  for (const id of ids) {
    await refresh(id);
    if (state.streams.size < ${PAGE_STREAMS}) state.streams.set(id, stream(id)); else state.polling.add(id);
  }
  // Polled clusters every second; every cluster every 5 s for the ages and anything a stream missed.
  let tick = 0;
  state.timer = setInterval(() => {
    tick++;
    for (const id of ids) if (state.polling.has(id) || tick % 5 === 0) refresh(id).catch(() => {});
  }, 1000);
}

if (sessionStorage.getItem(KEY)) start().catch((err) => err.message !== '401' && signOut(err.message));
else showSignIn();
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>nfs-ha status</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>nfs-ha status</h1><span id="who"></span></header>
<main></main>
<p class="muted">API: <a href="/docs">/docs</a></p>
<script>${SCRIPT}</script>
</body>
</html>
`;

export function statusPageRouter() {
  const app = new Hono();
  // The page is inline, and a framing or a foreign script has no business here.
  app.get('/', (c) =>
    c.html(PAGE, 200, {
      'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'",
      'cache-control': 'no-store',
    }),
  );
  return app;
}
