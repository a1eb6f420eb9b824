// The host page: join a room, check devices, go live (WHIP to
// /whip/ROOM/IDENTITY), share the screen (/whip/ROOM/IDENTITY-screen), see
// and hear the other hosts (one WHEP session per stream), chat.
//
// URL: /host/ROOM?identity=I&name=Display+Name&token=JWT
// (or /host.html?room=ROOM&...). With room and identity (or a token) the
// page joins and goes live at once; &autostart=0 joins without going live,
// for a device check first.

import { Connection, publish } from './whip-whep.js';
import { ChatPanel } from './chat.js';
import { StreamGrid } from './grid.js';
import { format, statsLoop } from './stats.js';
import { mediaError } from './media.js';
import { audioConstraints as audioConstraintsOf, fillDeviceSelects, videoConstraints as videoConstraintsOf } from './devices.js';
import { LevelMeter } from './level-meter.js';
import { LogPanel } from './log-panel.js';
import { CompositeStatus } from './composite.js';
import { authHeaders, Room, roomFromURL, SCREEN_SUFFIX, SEGMENT, takeTokenFromURL, whoami } from './room.js';

const $ = (id) => document.getElementById(id);

const st = {
  phase: 'setup', // setup, joining, joined, left, error
  error: '',
  room: '',
  identity: '',
  name: '',
  token: '',
  me: null, // from /api/v1/me
  roomClient: null,
  grid: null,
  media: null, // camera and microphone
  pub: { state: 'idle', error: '', conn: new Connection(null, (...a) => onPubChange(...a)), stopStats: null, stats: null },
  screen: { state: 'idle', error: '', conn: new Connection(null, (...a) => onScreenChange(...a)), media: null },
  micMuted: false,
  camMuted: false,
};

// ---- log panel ----

const logPanel = new LogPanel($('log'));
const log = (level, text) => logPanel.add(level, text);

// ---- status ----

function setPhase(phase, msg = '') {
  st.phase = phase;
  st.error = phase === 'error' ? msg : '';
  const labels = { setup: 'not joined', joining: 'joining', joined: 'in the room', left: 'left', error: 'error' };
  $('room-state').dataset.state = phase === 'joined' ? 'live' : phase;
  $('room-state').textContent = labels[phase] || phase;
  $('room-msg').textContent = msg;
  $('room-msg').classList.toggle('error', phase === 'error');
  const inRoom = phase === 'joining' || phase === 'joined';
  $('setup').hidden = inRoom;
  $('studio').hidden = !inRoom;
  $('room-title').textContent = st.room ? `Room ${st.room}` : '';
  renderControls();
}

function setPub(state, msg = '') {
  st.pub.state = state;
  st.pub.error = state === 'error' ? msg : '';
  const b = $('pub-state');
  b.dataset.state = state;
  b.textContent = state === 'live' ? 'live' : state === 'idle' ? 'not live' : state;
  $('pub-msg').textContent = msg;
  $('pub-msg').classList.toggle('error', state === 'error');
  renderControls();
}

function setScreen(state, msg = '') {
  st.screen.state = state;
  st.screen.error = state === 'error' ? msg : '';
  $('screen-box').hidden = state === 'idle' || state === 'error';
  $('screen-state').dataset.state = state;
  $('screen-state').textContent = state === 'live' ? 'screen live' : `screen ${state}`;
  if (msg) $('pub-msg').textContent = msg;
  renderControls();
}

function renderControls() {
  const pubBusy = st.pub.state === 'connecting' || st.pub.state === 'live';
  const joined = st.phase === 'joined' || st.phase === 'joining';
  $('go-live').disabled = !joined || pubBusy || !canPublish();
  $('stop-live').disabled = !pubBusy;
  const screenBusy = st.screen.state === 'connecting' || st.screen.state === 'live';
  $('share').textContent = screenBusy ? 'Stop sharing' : 'Share screen';
  $('share').setAttribute('aria-pressed', String(screenBusy));
  $('share').disabled = !joined || !canPublish() || !navigator.mediaDevices?.getDisplayMedia;
  $('mute-mic').textContent = st.micMuted ? 'Unmute mic' : 'Mute mic';
  $('mute-mic').setAttribute('aria-pressed', String(st.micMuted));
  $('mute-mic').disabled = !st.media?.getAudioTracks().length;
  $('mute-cam').textContent = st.camMuted ? 'Camera on' : 'Camera off';
  $('mute-cam').setAttribute('aria-pressed', String(st.camMuted));
  $('mute-cam').disabled = !st.media?.getVideoTracks().length;
}

function canPublish() {
  return !st.me || st.me.open || (st.me.grants || []).includes('publish');
}

function canChat() {
  return !st.me || st.me.open || (st.me.grants || []).includes('chat');
}

// ---- browser support ----

function supportChecks() {
  const caps = window.RTCRtpSender?.getCapabilities?.('video')?.codecs || [];
  return [
    ['WebRTC', !!window.RTCPeerConnection],
    ['Camera and microphone', !!navigator.mediaDevices?.getUserMedia && window.isSecureContext],
    ['Screen sharing', !!navigator.mediaDevices?.getDisplayMedia],
    ['H.264 video', caps.some((c) => c.mimeType === 'video/H264')],
    ['Codec preferences', !!window.RTCRtpTransceiver?.prototype?.setCodecPreferences],
    ['Room events (EventSource)', !!window.EventSource],
    ['Mic level meter (Web Audio)', !!(window.AudioContext || window.webkitAudioContext)],
  ];
}

function renderSupport() {
  $('support').replaceChildren(
    ...supportChecks().map(([what, ok]) => {
      const li = document.createElement('li');
      li.dataset.ok = String(ok);
      li.textContent = `${ok ? '✓' : '✗'} ${what}`;
      return li;
    }),
  );
}

// ---- devices ----

const videoConstraints = () => videoConstraintsOf($('camera-select'));
const audioConstraints = () => audioConstraintsOf($('mic-select'));

// startMedia opens the camera and microphone once, however many callers
// ask at the same time.
let mediaPending = null;
function startMedia() {
  if (st.media) return Promise.resolve(st.media);
  mediaPending ??= openMedia().finally(() => {
    mediaPending = null;
  });
  return mediaPending;
}

async function openMedia() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('This browser cannot capture the camera here (it needs https or localhost).');
  }
  let media = null;
  let first = null;
  for (const c of [{ video: videoConstraints(), audio: audioConstraints() }, { video: videoConstraints() }, { audio: audioConstraints() }]) {
    try {
      media = await navigator.mediaDevices.getUserMedia(c);
      break;
    } catch (err) {
      first ??= err;
      if (err.name !== 'NotFoundError' && err.name !== 'OverconstrainedError') break;
    }
  }
  if (!media) throw new Error(mediaError(first));
  if (st.phase !== 'joining' && st.phase !== 'joined') {
    // Left the room meanwhile.
    media.getTracks().forEach((t) => t.stop());
    throw new Error('not in a room');
  }
  st.media = media;
  applyMutes();
  $('preview').srcObject = media;
  $('preview-off').hidden = media.getVideoTracks().length > 0;
  meter.attach(media);
  await listDevices();
  renderControls();
  const v = media.getVideoTracks()[0];
  const a = media.getAudioTracks()[0];
  log('info', `Devices: ${v ? v.label || 'camera' : 'no camera'}, ${a ? a.label || 'microphone' : 'no microphone'}`);
  return media;
}

function stopMedia() {
  st.media?.getTracks().forEach((t) => t.stop());
  st.media = null;
  meter.attach(null);
  $('preview').srcObject = null;
  $('preview-off').hidden = false;
  renderControls();
}

function listDevices() {
  return fillDeviceSelects($('camera-select'), $('mic-select'), st.media);
}

// switchDevice opens the newly selected camera or microphone and swaps it
// into the preview and, when live, into the running session.
async function switchDevice(kind) {
  if (!st.media) return;
  try {
    const c = kind === 'video' ? { video: videoConstraints() } : { audio: audioConstraints() };
    const fresh = await navigator.mediaDevices.getUserMedia(c);
    const track = kind === 'video' ? fresh.getVideoTracks()[0] : fresh.getAudioTracks()[0];
    const old = kind === 'video' ? st.media.getVideoTracks()[0] : st.media.getAudioTracks()[0];
    if (old) {
      st.media.removeTrack(old);
      old.stop();
    }
    st.media.addTrack(track);
    applyMutes();
    // The transceiver's receiver track tells its kind even when the sender has none.
    const tr = st.pub.conn.session?.pc.getTransceivers().find((t) => t.receiver.track?.kind === kind);
    if (tr) await tr.sender.replaceTrack(track);
    if (kind === 'audio') meter.attach(st.media);
    $('preview').srcObject = st.media;
    log('info', `Switched ${kind === 'video' ? 'camera' : 'microphone'} to ${track.label || 'another device'}`);
  } catch (err) {
    log('error', mediaError(err));
  }
}

function applyMutes() {
  st.media?.getAudioTracks().forEach((t) => (t.enabled = !st.micMuted));
  st.media?.getVideoTracks().forEach((t) => (t.enabled = !st.camMuted));
}

function muteMic(on = !st.micMuted) {
  st.micMuted = !!on;
  applyMutes();
  log('info', st.micMuted ? 'Microphone muted' : 'Microphone on');
  renderControls();
}

function muteCamera(on = !st.camMuted) {
  st.camMuted = !!on;
  applyMutes();
  $('preview-off').hidden = !st.camMuted && !!st.media?.getVideoTracks().length;
  $('preview-off').textContent = st.camMuted ? 'Camera off' : 'No camera';
  log('info', st.camMuted ? 'Camera off' : 'Camera on');
  renderControls();
}

const meter = new LevelMeter($('meter-bar'), $('meter'));

// ---- publishing ----

function whipURL(name) {
  const q = st.me?.open && st.name ? `?name=${encodeURIComponent(st.name)}` : '';
  return `/whip/${st.room}/${name}${q}`;
}

function goLive() {
  if (st.pub.conn.busy) return;
  if (st.phase !== 'joined' && st.phase !== 'joining') return;
  st.pub.conn.start(async (opts) => {
    const media = await startMedia();
    opts.signal.throwIfAborted();
    setPub('connecting', `Connecting to ${st.room}/${st.identity}…`);
    return publish(whipURL(st.identity), media, { headers: authHeaders(st.token), ...opts });
  });
}

function onPubChange(state, c, prev) {
  if (state !== 'live' && state !== 'interrupted') stopPubStats();
  switch (state) {
    case 'connecting':
      setPub('connecting', 'Starting the camera…');
      break;
    case 'live':
      setPub('live', `Live in ${st.room} as ${st.identity}`);
      if (prev === 'interrupted') {
        log('info', 'Connection recovered');
        break;
      }
      log('info', `Published ${st.room}/${st.identity}`);
      st.pub.stopStats = statsLoop(c.session.pc, 'outbound-rtp', (s) => {
        st.pub.stats = s;
        $('pub-stats').textContent = format(s);
      });
      break;
    case 'interrupted':
      setPub('connecting', 'Connection interrupted, trying to recover…');
      log('warn', 'Connection to the server interrupted');
      break;
    case 'ended':
    case 'failed':
      setPub('error', 'The connection to the server was lost.');
      log('error', 'Publishing stopped: the connection to the server was lost');
      break;
    case 'error':
      setPub('error', c.error.message);
      log('error', `Cannot go live: ${c.error.message}`);
      break;
  }
}

function stopPubStats() {
  st.pub.stopStats?.();
  st.pub.stopStats = null;
  st.pub.stats = null;
  $('pub-stats').textContent = '';
}

function endPublishing(opts) {
  stopPubStats();
  return st.pub.conn.stop({ quiet: true, ...opts });
}

async function stopLive() {
  const was = st.pub.state;
  await endPublishing();
  setPub('idle', was === 'live' ? 'Stopped. The others no longer see you.' : '');
  if (was === 'live') log('info', `Stopped publishing ${st.room}/${st.identity}`);
}

// ---- screen share ----

function shareScreen() {
  if (st.screen.conn.busy) return;
  st.screen.conn.start(async (opts) => {
    const media = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    if (opts.signal.aborted) {
      media.getTracks().forEach((t) => t.stop());
      opts.signal.throwIfAborted();
    }
    st.screen.media = media;
    $('screen-preview').srcObject = media;
    // The browser's own "Stop sharing" button.
    media.getVideoTracks()[0]?.addEventListener('ended', () => st.screen.media === media && stopScreen());
    return publish(whipURL(st.identity + SCREEN_SUFFIX), media, { headers: authHeaders(st.token), ...opts });
  });
}

function onScreenChange(state, c, prev) {
  switch (state) {
    case 'connecting':
      setScreen('connecting');
      break;
    case 'live':
      setScreen('live');
      if (prev === 'connecting') log('info', `Sharing the screen as ${st.room}/${st.identity}${SCREEN_SUFFIX}`);
      break;
    case 'ended':
    case 'failed':
      log('error', 'Screen share stopped: the connection to the server was lost');
      stopScreen();
      break;
    case 'error': {
      releaseScreen();
      const cancelled = c.error.name === 'NotAllowedError';
      const msg = cancelled ? 'Screen sharing was cancelled.' : `Cannot share the screen: ${c.error.message}`;
      setScreen('error', msg);
      log(cancelled ? 'warn' : 'error', msg);
      break;
    }
  }
}

function releaseScreen() {
  st.screen.media?.getTracks().forEach((t) => t.stop());
  st.screen.media = null;
  $('screen-preview').srcObject = null;
}

function endScreen(opts) {
  const stopped = st.screen.conn.stop({ quiet: true, ...opts });
  releaseScreen();
  return stopped;
}

async function stopScreen() {
  const was = st.screen.state;
  await endScreen();
  setScreen('idle');
  if (was === 'live') log('info', 'Stopped sharing the screen');
}

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

const chat = new ChatPanel({
  list: $('chat-list'),
  form: $('chat-form'),
  input: $('chat-text'),
  status: $('chat-msg'),
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

renderSupport();
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
window.livegate = {
  host: {
    get phase() {
      return st.phase;
    },
    get state() {
      return st.pub.state;
    },
    get error() {
      return st.pub.error || st.error;
    },
    get room() {
      return st.room;
    },
    get identity() {
      return st.identity;
    },
    get name() {
      return st.name;
    },
    get screen() {
      return st.screen.state;
    },
    get pc() {
      return st.pub.conn.session?.pc ?? null;
    },
    get stats() {
      return st.pub.stats;
    },
    get micMuted() {
      return st.micMuted;
    },
    get cameraMuted() {
      return st.camMuted;
    },
    get micLevel() {
      return meter.level;
    },
    get devices() {
      return {
        cameras: [...$('camera-select').options].map((o) => o.textContent),
        mics: [...$('mic-select').options].map((o) => o.textContent),
      };
    },
    get support() {
      return Object.fromEntries(supportChecks());
    },
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
  get room() {
    return st.roomClient?.snapshot() ?? null;
  },
  get tiles() {
    return st.grid?.info() ?? [];
  },
  get log() {
    return logPanel.entries.map((l) => `${l.level}: ${l.text}`);
  },
};
