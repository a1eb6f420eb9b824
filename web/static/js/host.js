// The host page: join a room, check devices, go live (WHIP to
// /whip/ROOM/IDENTITY), share the screen (/whip/ROOM/IDENTITY-screen), see
// and hear the other hosts (one WHEP session per stream), chat.
//
// URL: /host/ROOM?identity=I&name=Display+Name&token=JWT
// (or /host.html?room=ROOM&...). With room and identity (or a token) the
// page joins and goes live at once; &autostart=0 joins without going live,
// for a device check first. Its state is in host-state.js, the camera
// and microphone in host-media.js, the WHIP sessions in host-publish.js.

import { authHeaders, takeTokenFromURL, whoami } from './api.js';
import { ChatPanel } from './chat.js';
import { CompositeStatus } from './composite.js';
import { StreamGrid } from './grid.js';
import { listDevices, meter, muteCamera, muteMic, startMedia, stopMedia, switchDevice } from './host-media.js';
import { endPublishing, endScreen, goLive, shareScreen, stopLive, stopScreen } from './host-publish.js';
import { $, canChat, log, logPanel, setPhase, setPub, setScreen, st } from './host-state.js';
import { readOnly } from './hooks.js';
import { Room, roomFromURL, SCREEN_SUFFIX, SEGMENT } from './room.js';
import { renderSupport, supportChecks } from './support.js';

// ---- joining and leaving ----

function readSetup() {
  const room = $('join-room').value.trim();
  const identity = $('join-identity').value.trim();
  const name = $('join-name').value.trim();
  const token = $('join-token').value.trim();
  for (const [input, ok] of [
    [$('join-room'), SEGMENT.test(room)],
    [$('join-identity'), SEGMENT.test(identity) && !identity.endsWith(SCREEN_SUFFIX)],
  ]) {
    input.setAttribute('aria-invalid', String(!ok));
  }
  if (!SEGMENT.test(room)) throw new Error('Room must be 1–64 characters of A–Z, a–z, 0–9, _ and -.');
  if (!SEGMENT.test(identity)) throw new Error('Identity must be 1–64 characters of A–Z, a–z, 0–9, _ and -.');
  if (identity.endsWith(SCREEN_SUFFIX)) throw new Error(`Identity must not end with "${SCREEN_SUFFIX}": that is for screen shares.`);
  return { room, identity, name, token };
}

async function join({ autostart = false } = {}) {
  if (st.phase === 'joining' || st.phase === 'joined') return;
  let setup;
  try {
    setup = readSetup();
  } catch (err) {
    $('join-msg').textContent = err.message;
    return;
  }
  $('join-msg').textContent = '';
  meter.resume();
  Object.assign(st, setup);
  // The token says who we are; check it before anything else.
  try {
    st.me = await whoami(st.token);
  } catch (err) {
    st.me = null;
    $('join-msg').textContent =
      err.status === 401 ? `This gateway needs an access token: ${err.message}` : `Cannot check the token: ${err.message}`;
    setPhase('setup');
    $('join-token').focus();
    return;
  }
  if (!st.me.open) {
    if (st.me.room && st.me.room !== st.room) {
      $('join-msg').textContent = `The token is for room "${st.me.room}", not "${st.room}".`;
      return;
    }
    if (st.me.identity && st.me.identity !== st.identity) {
      $('join-msg').textContent = `The token is for identity "${st.me.identity}", not "${st.identity}".`;
      return;
    }
    st.name = st.me.name || st.identity;
  }
  st.name ||= st.identity;

  setPhase('joining', `Joining ${st.room}…`);
  const url = new URL(location.href);
  url.pathname = `/host/${st.room}`;
  url.search = '';
  url.searchParams.set('identity', st.identity);
  if (st.me.open && st.name !== st.identity) url.searchParams.set('name', st.name);
  if (!autostart) url.searchParams.set('autostart', '0');
  history.replaceState(null, '', url);
  $('me-name').textContent = st.name === st.identity ? `(${st.identity})` : `(${st.name}, ${st.identity})`;
  const invite = new URL(`/host/${st.room}`, location.href);
  $('invite').href = invite.href;
  $('invite').textContent = invite.href;
  $('watch-link').href = `/watch/${st.room}`;
  $('watch-link').textContent = `/watch/${st.room}`;
  document.title = `${st.room} · Host · livegate`;

  const room = new Room(st.room, { token: st.token });
  st.roomClient = room;
  st.grid = new StreamGrid($('grid'), {
    headers: () => authHeaders(st.token),
    exclude: st.identity,
    ended: (path) => room.ended(path),
    log,
    onChange: renderGridState,
  });
  st.grid.onSoundBlocked = () => {
    $('sound').hidden = false;
    log('warn', 'The browser blocks sound until you click: press "Enable sound"');
  };
  st.grid.setStats($('show-stats').checked);
  chat.attach(room);
  chat.setEnabled(canChat(), 'Your token does not allow chat');
  const known = new Set();
  room.addEventListener('status', (e) => {
    const { status, error } = e.detail;
    if (status === 'open' && st.phase === 'joining') {
      setPhase('joined', '');
      log('info', `Joined room ${st.room} as ${st.identity}${st.me.open ? ' (open gateway: no token needed)' : ''}`);
    } else if (status === 'open' && st.phase === 'joined') {
      setPhase('joined', '');
      log('info', 'Room connection restored');
    } else if (status === 'reconnecting') {
      $('room-msg').textContent = error;
      log('warn', error);
    } else if (status === 'error') {
      $('room-msg').textContent = error;
      $('room-msg').classList.add('error');
      log('error', `Room: ${error}`);
    }
  });
  room.addEventListener('change', (e) => {
    const { type, data } = e.detail;
    if (type === 'host_joined' && data.identity !== st.identity) log('info', `${data.name || data.identity} joined`);
    if (type === 'host_left' && data.identity !== st.identity) {
      log('info', `${data.identity} left${data.reason === 'ended' ? ' (connection lost)' : ''}`);
    }
    if (type === 'stream_reconnecting' && data.identity !== st.identity) log('warn', `${data.stream.path} is reconnecting`);
    if (type === 'snapshot') {
      chat.render(room.chat);
      for (const h of room.hosts.values()) {
        if (!known.has(h.identity) && h.identity !== st.identity) log('info', `${h.name} is in the room`);
      }
    }
    known.clear();
    for (const id of room.hosts.keys()) known.add(id);
    st.grid.update(room.streams());
    $('viewer-count').textContent = `${room.viewers} playing (hosts included)`;
  });
  room.addEventListener('chat', (e) => chat.add(e.detail));
  room.connect();
  st.composite = new CompositeStatus($('composite-state'), st.room, st.token);
  st.composite.start();

  try {
    await startMedia();
  } catch (err) {
    log('error', err.message);
    setPub('error', err.message);
  }
  if (autostart && st.phase !== 'left') goLive();
}

function renderGridState() {
  $('grid-empty').hidden = (st.grid?.tiles.size ?? 0) > 0;
}

async function leave({ keepalive = false } = {}) {
  if (st.phase !== 'joined' && st.phase !== 'joining') return;
  const stops = [endPublishing({ keepalive }), endScreen({ keepalive })];
  st.grid?.stopAll({ keepalive });
  st.roomClient?.close();
  st.roomClient = null;
  st.composite?.stop();
  st.composite = null;
  stopMedia();
  setPub('idle');
  setScreen('idle');
  await Promise.all(stops);
  log('info', `Left room ${st.room}`);
  setPhase('left', `You left ${st.room}.`);
  $('setup').hidden = false;
}

// ---- chat ----

const chat = new ChatPanel($('chat'), {
  sender: () => ({ identity: st.identity, name: st.name }),
  me: () => st.identity,
});

// ---- wiring ----

$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  join({ autostart: true });
});
$('join-preview').addEventListener('click', () => join({ autostart: false }));
$('go-live').addEventListener('click', goLive);
$('stop-live').addEventListener('click', stopLive);
$('mute-mic').addEventListener('click', () => muteMic());
$('mute-cam').addEventListener('click', () => muteCamera());
$('share').addEventListener('click', () => (st.screen.state === 'live' || st.screen.state === 'connecting' ? stopScreen() : shareScreen()));
$('leave').addEventListener('click', () => leave());
$('camera-select').addEventListener('change', () => switchDevice('video'));
$('mic-select').addEventListener('change', () => switchDevice('audio'));
$('show-stats').addEventListener('change', (e) => st.grid?.setStats(e.target.checked));
$('sound').addEventListener('click', () => {
  st.grid?.enableSound();
  meter.resume();
  $('sound').hidden = true;
});
document.addEventListener('click', () => meter.resume(), { once: true });
navigator.mediaDevices?.addEventListener?.('devicechange', listDevices);

// Leaving the page ends our sessions at the server at once: keepalive lets
// the DELETEs outlive the page.
window.addEventListener('pagehide', () => leave({ keepalive: true }));

// ---- start ----

renderSupport($('support'));
setPhase('setup');
setPub('idle');
{
  const q = new URLSearchParams(location.search);
  const token = takeTokenFromURL();
  const room = roomFromURL('host');
  if (room) $('join-room').value = room;
  // ?name= alone may serve as the identity too.
  const identity = q.get('identity') || (SEGMENT.test(q.get('name') || '') ? q.get('name') : '');
  if (identity) $('join-identity').value = identity;
  if (q.get('name')) $('join-name').value = q.get('name');
  if (token) $('join-token').value = token;
  const autostart = !['0', 'false', 'no'].includes(q.get('autostart') || '');
  // With a token, it names the room and identity.
  (async () => {
    let me = null;
    try {
      me = await whoami(token);
    } catch (err) {
      $('token-hint').textContent =
        err.status === 401 ? '(required: paste one from your app or `livegate token`)' : `(${err.message})`;
    }
    if (me?.open) {
      $('token-hint').textContent = '(not needed: this gateway is open to this machine)';
    } else if (me) {
      if (me.room && !room) $('join-room').value = me.room;
      if (me.identity && !identity) $('join-identity').value = me.identity;
      if (me.name) $('join-name').value = me.name;
      $('join-name').disabled = true;
      $('token-hint').textContent = `(${me.identity} in ${me.room || 'any room'}: ${(me.grants || []).join(', ')})`;
    }
    // Everything known and allowed: join at once.
    if (me && $('join-room').value && $('join-identity').value) join({ autostart });
  })();
}

// Hooks for tests and the console.
window.livegate = readOnly(
  {
    room: () => st.roomClient?.snapshot() ?? null,
    tiles: () => st.grid?.info() ?? [],
    log: () => logPanel.entries.map((l) => `${l.level}: ${l.text}`),
  },
  {
    host: readOnly(
      {
        phase: () => st.phase,
        state: () => st.pub.state,
        error: () => st.pub.error || st.error,
        room: () => st.room,
        identity: () => st.identity,
        name: () => st.name,
        screen: () => st.screen.state,
        pc: () => st.pub.conn.session?.pc ?? null,
        stats: () => st.pub.stats,
        micMuted: () => st.micMuted,
        cameraMuted: () => st.camMuted,
        micLevel: () => meter.level,
        devices: () => ({
          cameras: [...$('camera-select').options].map((o) => o.textContent),
          mics: [...$('mic-select').options].map((o) => o.textContent),
        }),
        support: () => Object.fromEntries(supportChecks()),
      },
      {
        join: (autostart = true) => join({ autostart }),
        goLive,
        stop: stopLive,
        leave: () => leave(),
        shareScreen,
        stopScreen,
        muteMic,
        muteCamera,
        sendChat: (text) => chat.send(text),
      },
    ),
  },
);
