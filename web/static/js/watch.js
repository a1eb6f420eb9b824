// The viewer page /watch/ROOM: every live stream of the room in a grid that
// follows hosts joining and leaving (plain WHEP), the room's chat (sending
// needs the chat grant, or an open gateway) and a stats overlay.
//
// URL: /watch/ROOM?token=JWT&stats=1

import { ChatPanel } from './chat.js';
import { StreamGrid } from './grid.js';
import { authHeaders, takeTokenFromURL, whoami } from './api.js';
import { readOnly } from './hooks.js';
import { Room, roomFromURL, SEGMENT } from './room.js';

const $ = (id) => document.getElementById(id);

const st = {
  room: roomFromURL('watch'),
  token: takeTokenFromURL(),
  me: null,
  client: null,
  grid: null,
  guest: '',
  ended: '', // what became of the last stream that went away, while none plays
};

// An identity for chat on open gateways, kept for this tab.
st.guest = sessionStorage.getItem('livegate.guest') || `guest-${Math.random().toString(16).slice(2, 8)}`;
sessionStorage.setItem('livegate.guest', st.guest);

function status(state, msg = '') {
  $('room-state').dataset.state = state === 'open' ? 'live' : state;
  $('room-state').textContent = state === 'open' ? 'connected' : state;
  $('room-msg').textContent = msg;
  $('room-msg').classList.toggle('error', state === 'error');
}

const chat = new ChatPanel($('chat'), {
  askName: true,
  sender: () => ({ identity: st.guest, name: $('chat-name').value.trim() }),
  me: () => st.me?.identity || st.guest,
});

function renderGrid() {
  $('grid-empty').hidden = st.grid.tiles.size > 0;
  $('grid-empty').textContent = `${st.ended ? `${st.ended} ` : ''}Waiting for hosts to go live…`;
}

async function start() {
  st.client?.close();
  st.grid?.stopAll();
  $('room-title').textContent = `Room ${st.room}`;
  if (!SEGMENT.test(st.room)) {
    status('error', 'Open /watch/ROOM with a room of 1–64 characters of A–Z, a–z, 0–9, _ and -.');
    return;
  }
  document.title = `${st.room} · Watch · livegate`;
  try {
    st.me = await whoami(st.token);
  } catch (err) {
    st.me = null;
    status('error', err.status === 401 ? 'This room needs an access token (see "Access token" above).' : err.message);
    $('auth').open = true;
    chat.setEnabled(false, 'Join with a token to chat');
    return;
  }
  const chatOK = st.me.open || ((st.me.grants || []).includes('chat') && st.me.room === st.room);
  $('chat-name-row').hidden = !st.me.open;
  chat.setEnabled(chatOK, st.me.open ? '' : 'Your token does not allow chat');

  const client = new Room(st.room, { token: st.token });
  st.client = client;
  st.grid = new StreamGrid($('grid'), {
    headers: () => authHeaders(st.token),
    sound: false, // browsers allow muted autoplay; "Enable sound" unmutes
    onChange: renderGrid,
    ended: (path) => client.ended(path),
    log: (level, text) => (level === 'info' ? console.debug(text) : console.warn(text)),
  });
  st.grid.setStats($('show-stats').checked);
  renderGrid();
  chat.attach(client);
  client.addEventListener('status', (e) => status(e.detail.status, e.detail.error));
  client.addEventListener('change', (e) => {
    const { type, data } = e.detail;
    if (type === 'snapshot') chat.render(client.chat);
    if (type === 'stream_down') st.ended = `Stream ended: ${data.stream.path}${data.reason === 'left' ? ' (the host left)' : ''}.`;
    if (type === 'stream_up') st.ended = '';
    st.grid.update(client.streams().filter((s) => s.state === 'live' || st.grid.tiles.has(s.path)));
    $('viewer-count').textContent = `${client.viewers} playing (hosts included)`;
  });
  client.addEventListener('chat', (e) => chat.add(e.detail));
  client.connect();
}

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  st.token = $('token').value.trim();
  start();
});
$('show-stats').addEventListener('change', (e) => st.grid?.setStats(e.target.checked));
$('sound').addEventListener('click', () => {
  st.grid?.enableSound();
  $('sound').hidden = true;
});
$('show-stats').checked = new URLSearchParams(location.search).get('stats') === '1';
window.addEventListener('pagehide', () => st.grid?.stopAll({ keepalive: true }));
if (st.token) $('token').value = st.token;
start();

// Hooks for tests and the console.
window.livegate = readOnly(
  {
    room: () => st.client?.snapshot() ?? null,
    tiles: () => st.grid?.info() ?? [],
    canChat: () => !$('chat-text').disabled,
  },
  { sendChat: (text) => chat.send(text) },
);
