// The livegate page: go live with the camera (WHIP) and watch live streams
// (WHEP). Deep links: /?watch=ROOM/NAME plays at once, /?publish=ROOM/NAME
// fills in the path to go live on.
import { mediaError } from './media.js';
import { format, formatBitrate, sinceLastPacket, statsLoop } from './stats.js';
import { Connection, play, publish } from './whip-whep.js';
import { authHeaders as bearer, Room, SEGMENT, takeTokenFromURL } from './room.js';

const $ = (id) => document.getElementById(id);

const el = {
  health: $('health'),
  auth: $('auth'),
  token: $('token'),
  pubForm: $('pub-form'),
  pubRoom: $('pub-room'),
  pubName: $('pub-name'),
  preview: $('preview'),
  previewOff: $('preview-off'),
  goLive: $('go-live'),
  stopLive: $('stop-live'),
  camera: $('camera'),
  pubState: $('pub-state'),
  pubMsg: $('pub-msg'),
  pubStats: $('pub-stats'),
  pubShare: $('pub-share'),
  pubLink: $('pub-link'),
  streamList: $('stream-list'),
  noStreams: $('no-streams'),
  watchForm: $('watch-form'),
  watchRoom: $('watch-room'),
  watchName: $('watch-name'),
  player: $('player'),
  playerOff: $('player-off'),
  watch: $('watch'),
  stopWatch: $('stop-watch'),
  watchState: $('watch-state'),
  watchMsg: $('watch-msg'),
  watchStats: $('watch-stats'),
  quality: $('quality'),
  qualityLabel: $('quality-label'),
};

// ---- paths ----

function parsePath(s) {
  const parts = (s || '').trim().replace(/^\/+|\/+$/g, '').split('/');
  if (parts.length !== 2 || !parts.every((p) => SEGMENT.test(p))) return null;
  return { room: parts[0], name: parts[1] };
}

// readPath validates a ROOM and NAME input pair and returns "room/name".
function readPath(roomInput, nameInput) {
  let bad = null;
  for (const input of [roomInput, nameInput]) {
    input.value = input.value.trim();
    const ok = SEGMENT.test(input.value);
    input.setAttribute('aria-invalid', String(!ok));
    if (!ok && !bad) bad = input;
  }
  if (bad) {
    bad.focus();
    const what = bad === roomInput ? 'Room' : 'Name';
    throw new Error(`${what} must be 1–64 characters of A–Z, a–z, 0–9, _ and -`);
  }
  return `${roomInput.value}/${nameInput.value}`;
}

function fill(roomInput, nameInput, p) {
  roomInput.value = p.room;
  nameInput.value = p.name;
}

function showState(badge, msgEl, state, msg) {
  badge.dataset.state = state;
  badge.textContent = state;
  msgEl.textContent = msg || '';
  msgEl.classList.toggle('error', state === 'error');
}

// ---- access token ----

// authHeaders carries the access token, if any, as a bearer token.
function authHeaders() {
  return bearer(el.token.value.trim());
}

// needToken opens the token field when the server asked for a token.
function needToken(err) {
  if (err?.status === 401 && !el.auth.open) el.auth.open = true;
}

// ?token=JWT fills in the token, which then leaves the address bar and
// history so that it does not leak through bookmarks or screen shares.
{
  const token = takeTokenFromURL();
  if (token) {
    el.token.value = token;
    el.auth.open = true;
  }
}
el.token.addEventListener('change', () => refreshStreams());

// ---- stats ----

// showStats writes a line of statistics of pc into out once a second.
function showStats(pc, type, out, onSample = () => {}) {
  const stop = statsLoop(pc, type, (s) => {
    out.textContent = format(s);
    onSample(s);
  });
  return () => {
    stop();
    out.textContent = '';
  };
}

// ---- publishing ----

const pub = {
  state: 'idle',
  error: '',
  path: '',
  media: null, // camera and microphone
  conn: new Connection(null, (state, c) => onPubChange(state, c)),
  stopStats: null,
};

function setPub(state, msg = '') {
  pub.state = state;
  pub.error = state === 'error' ? msg : '';
  showState(el.pubState, el.pubMsg, state, msg);
  const busy = state === 'connecting' || state === 'live';
  el.goLive.disabled = busy;
  el.stopLive.disabled = !busy;
  el.camera.disabled = busy;
  el.pubRoom.disabled = busy;
  el.pubName.disabled = busy;
  el.pubShare.hidden = state !== 'live';
  if (state === 'live') {
    const link = `${location.origin}/?watch=${pub.path}`;
    el.pubLink.href = link;
    el.pubLink.textContent = link;
  }
}

async function startCamera() {
  if (pub.media) return pub.media;
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('This browser cannot capture the camera here (it needs https or localhost).');
  }
  const video = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
  let media = null;
  let first = null;
  // Camera and microphone, else whichever of them exists.
  for (const c of [{ video, audio: true }, { video }, { audio: true }]) {
    try {
      media = await navigator.mediaDevices.getUserMedia(c);
      break;
    } catch (err) {
      first ??= err;
      if (err.name !== 'NotFoundError' && err.name !== 'OverconstrainedError') break;
    }
  }
  if (!media) throw new Error(mediaError(first));
  pub.media = media;
  el.preview.srcObject = media;
  el.previewOff.hidden = true;
  el.camera.textContent = 'Turn camera off';
  return media;
}

function stopCamera() {
  pub.media?.getTracks().forEach((t) => t.stop());
  pub.media = null;
  el.preview.srcObject = null;
  el.previewOff.hidden = false;
  el.camera.textContent = 'Preview camera';
}

function goLive() {
  if (pub.conn.busy) return;
  let path;
  try {
    path = readPath(el.pubRoom, el.pubName);
  } catch (err) {
    setPub('error', err.message);
    return;
  }
  pub.path = path;
  pub.conn.start(async (opts) => {
    const media = await startCamera();
    opts.signal.throwIfAborted();
    setPub('connecting', `Connecting to ${path}…`);
    return publish(`/whip/${path}`, media, { headers: authHeaders(), ...opts });
  });
}

function onPubChange(state, c) {
  if (state !== 'live' && state !== 'interrupted') {
    pub.stopStats?.();
    pub.stopStats = null;
  }
  switch (state) {
    case 'connecting':
      setPub('connecting', 'Starting the camera…');
      break;
    case 'live':
      setPub('live', `Live at ${pub.path}`);
      pub.stopStats ??= showStats(c.session.pc, 'outbound-rtp', el.pubStats);
      refreshStreams();
      break;
    case 'interrupted':
      setPub('connecting', 'Connection interrupted, trying to recover…');
      break;
    case 'ended':
    case 'failed':
      setPub('error', 'The connection to the server was lost.');
      break;
    case 'error':
      needToken(c.error);
      setPub('error', c.error.message);
      break;
  }
}

async function stopLive() {
  const was = pub.state;
  await pub.conn.stop({ quiet: true });
  onPubChange('idle', pub.conn);
  stopCamera();
  setPub('idle', was === 'live' ? `Stopped streaming to ${pub.path}.` : '');
  refreshStreams();
}

el.pubForm.addEventListener('submit', (e) => {
  e.preventDefault();
  goLive();
});
el.stopLive.addEventListener('click', stopLive);
el.camera.addEventListener('click', async () => {
  if (pub.media) {
    stopCamera();
    return;
  }
  try {
    await startCamera();
    if (pub.state === 'error') setPub('idle');
  } catch (err) {
    setPub('error', err.message);
  }
});

// ---- watching ----

// The player's states: idle; connecting; live; reconnecting (the publisher
// left and the server keeps the stream for its grace period, in case they
// come back); ended (the stream is over: it plays again here if it comes
// back); disconnected (the gateway went away); error.
const view = {
  state: 'idle',
  error: '',
  path: '',
  conn: new Connection(null, (state, c) => onViewChange(state, c)),
  gen: 0, // bumped when we follow another stream or stop: stale checks see it
  stopStats: null,
  stallTimer: null,
  stalled: false, // no media for a second while connected
  room: null, // the room's event stream: says at once when the publisher leaves or comes back
  checkSeq: 0,
  presented: 0, // frames presented, counted with requestVideoFrameCallback
  layer: '', // simulcast layer pinned with the quality menu ('' = the server chooses)
};

// following: states in which the page keeps track of the stream.
const following = new Set(['connecting', 'live', 'reconnecting', 'ended', 'disconnected']);

function setView(state, msg = '') {
  const was = view.state;
  view.state = state;
  view.error = state === 'error' || state === 'disconnected' ? msg : '';
  showState(el.watchState, el.watchMsg, state, msg);
  el.watchMsg.classList.toggle('error', state === 'error' || state === 'disconnected');
  el.stopWatch.disabled = !following.has(state);
  el.player.parentElement.dataset.state = state;
  el.playerOff.textContent =
    { reconnecting: 'Publisher reconnecting…', ended: 'Stream ended', disconnected: 'Disconnected' }[state] || 'Nothing playing';
  el.playerOff.hidden = !!el.player.srcObject && state !== 'reconnecting';
  markCurrent();
  // The live list says the same as the player.
  if (was !== state && (['reconnecting', 'ended', 'disconnected'].includes(state) || was === 'reconnecting')) refreshStreams();
}

function watch(path) {
  view.gen++;
  if (path !== view.path) {
    view.layer = '';
    el.quality.value = '';
    el.qualityLabel.hidden = true;
  }
  view.path = path;
  follow(path);
  const layer = view.layer ? `?layer=${encodeURIComponent(view.layer)}` : '';
  return view.conn.start((opts) => play(`/whep/${path}${layer}`, { headers: authHeaders(), ...opts }));
}

// ---- quality (simulcast layers) ----

// showQuality fills the quality menu with the stream's simulcast layers
// (from /api/v1/streams); a stream without layers has no menu.
async function showQuality(path) {
  let layers = [];
  try {
    const res = await fetch(`/api/v1/streams/${path}`, { cache: 'no-store', headers: authHeaders() });
    if (res.ok) {
      for (const t of (await res.json()).tracks || []) if (t.layers?.length) layers = t.layers;
    }
  } catch {
    return;
  }
  if (path !== view.path) return;
  const keep = view.layer;
  el.quality.replaceChildren(new Option('Auto', ''));
  for (const l of [...layers].reverse()) {
    const size = l.height ? `${l.height}p` : l.rid;
    const rate = l.bitrate ? ` · ${formatBitrate(l.bitrate)}` : '';
    el.quality.add(new Option(`${size}${rate}`, l.rid));
  }
  el.quality.value = layers.some((l) => l.rid === keep) ? keep : '';
  el.qualityLabel.hidden = layers.length < 2;
}

el.quality.addEventListener('change', () => {
  view.layer = el.quality.value;
  if (view.path && following.has(view.state)) watch(view.path);
});

function onViewChange(state, c) {
  if (state !== 'live' && state !== 'interrupted') detachPlayer();
  switch (state) {
    case 'connecting':
      setView('connecting', `Connecting to ${view.path}…`);
      break;
    case 'live':
      if (el.player.srcObject !== c.session.stream) attachPlayer(c.session);
      if (view.state === 'connecting') {
        setView('live', `Watching ${view.path}`);
        refreshStreams();
        showQuality(view.path);
      }
      checkStream(); // the publisher may have left while we connected
      break;
    case 'interrupted':
      if (view.state === 'live') setView('connecting', 'Connection interrupted, trying to recover…');
      break;
    case 'ended': // the server ended our session: the stream ended, or the gateway is shutting down
    case 'failed': // the network is gone
      checkStream({ sessionClosed: true });
      break;
    case 'error':
      watchFailed(c.error);
      break;
  }
}

async function watchFailed(err) {
  needToken(err);
  const gen = view.gen;
  // A stream in its grace period takes no new viewers: wait for it.
  const waiting = err.status === 404 && (await streamStatus(view.path)) === 'reconnecting';
  if (gen !== view.gen || view.conn.busy) return;
  if (waiting) setView('reconnecting', `Publisher reconnecting… ${view.path} plays as soon as they are back.`);
  else setView('error', err.message);
}

function attachPlayer(session) {
  el.player.srcObject = session.stream;
  el.player.controls = true;
  el.playerOff.hidden = true;
  el.player.play().catch(() => {}); // muted autoplay; the controls can unmute
  view.stopStats = showStats(session.pc, 'inbound-rtp', el.watchStats);
  view.stalled = false;
  view.stallTimer = setInterval(checkStall, 500);
}

function detachPlayer() {
  view.stopStats?.();
  view.stopStats = null;
  clearInterval(view.stallTimer);
  view.stallTimer = null;
  view.stalled = false;
  el.player.srcObject = null;
  el.player.controls = false;
  el.playerOff.hidden = false;
}

// checkStall notices when media stops while our connection is fine: the
// publisher is gone or stuck, possibly before the server knows (it waits a
// few seconds for a silent publisher's ICE). The player says so at once,
// and asks the server.
async function checkStall() {
  const pc = view.conn.session?.pc;
  if (!pc || view.conn.state !== 'live') return;
  let since;
  try {
    since = await sinceLastPacket(pc);
  } catch {
    return; // closed
  }
  const stalled = since != null && since > 1000;
  if (pc !== view.conn.session?.pc || stalled === view.stalled) return;
  view.stalled = stalled;
  if (stalled && view.state === 'live') setView('reconnecting', 'No media from the publisher: waiting for it…');
  checkStream({ stalled });
}

// streamStatus asks the server about path: 'live', 'reconnecting' (the
// publisher left; the server waits for it), 'ended' (no such stream),
// 'unreachable', or '' when it cannot tell (no access). The room's events
// say the same without a 404 in the console; this is for when they cannot.
async function streamStatus(path) {
  let res;
  try {
    res = await fetch(`/api/v1/streams/${path}`, { cache: 'no-store', headers: authHeaders() });
  } catch {
    return 'unreachable';
  }
  if (res.status === 404) return 'ended';
  if (!res.ok) return '';
  try {
    return (await res.json()).live ? 'live' : 'reconnecting';
  } catch {
    return '';
  }
}

// roomSays is what the room's event stream says of the stream we follow:
// live, reconnecting, left (its publisher hung up; the server still keeps
// it for the grace period), ended, or '' (no news: the room is not
// connected, or does not know the stream).
function roomSays() {
  const r = view.room;
  if (!r || r.status !== 'open') return '';
  const s = r.streams().find((x) => x.path === view.path);
  if (s) return s.state;
  return r.gone.get(view.path) || '';
}

// mediaFlowing reports whether pc receives bytes within ms.
async function mediaFlowing(pc, ms) {
  const bytes = async () => {
    let n = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp') n += s.bytesReceived || 0;
    });
    return n;
  };
  const sleep = (t) => new Promise((r) => setTimeout(r, t));
  try {
    await sleep(100); // packets already queued, and cached statistics
    const before = await bytes();
    await sleep(ms);
    return (await bytes()) > before;
  } catch {
    return false; // closed
  }
}

// reachable reports whether the gateway answers.
async function reachable() {
  try {
    return (await fetch('/healthz', { cache: 'no-store' })).ok;
  } catch {
    return false;
  }
}

// checkStream shows what became of the stream we follow. sessionClosed: our
// session is over (its server ended it, or the connection failed); stalled:
// no media comes (so if the gateway does not answer either, it is gone even
// if its DTLS close was lost).
async function checkStream({ sessionClosed = false, stalled = false } = {}) {
  if (!following.has(view.state)) return;
  const seq = ++view.checkSeq;
  const gen = view.gen;
  const path = view.path;
  const stale = () => seq !== view.checkSeq || gen !== view.gen; // a later check, or another stream
  sessionClosed ||= view.conn.state === 'ended' || view.conn.state === 'failed';
  if (view.conn.state === 'connecting') return; // the connection reports what the server says
  let status = roomSays();
  if (sessionClosed) {
    // The server ends viewers' sessions when the stream ends (never in its
    // grace period) or when it shuts down.
    if (!(await reachable())) status = 'unreachable';
    else if (status === '') status = await streamStatus(path);
    else if (status !== 'live') status = 'ended';
    if (stale()) return;
  } else if (status === 'left') {
    status = 'reconnecting';
  } else if (status === '' && (view.state === 'live' || stalled) && !view.room?.status.match(/^(open|connecting)$/)) {
    // No room events (no access, or no EventSource): ask.
    status = await streamStatus(path);
    if (stale()) return;
  }
  switch (status) {
    case 'live':
      if (view.conn.busy && !sessionClosed) {
        if (view.state === 'reconnecting' && !view.stalled) setView('live', `Watching ${path}`);
      } else {
        watch(path); // back after it ended or the gateway came back, or our session was dropped
      }
      break;
    case 'reconnecting':
      if (view.state !== 'reconnecting' || !el.watchMsg.textContent.startsWith('Publisher')) {
        setView('reconnecting', 'Publisher reconnecting…');
      }
      break;
    case 'ended':
      if (view.state !== 'ended' && (await stopSession())) setView('ended', `Stream ended: ${path} is no longer live.`);
      break;
    case 'unreachable':
      if ((sessionClosed || stalled) && view.state !== 'disconnected' && (await stopSession())) {
        setView('disconnected', 'Disconnected: the gateway is gone (shut down or unreachable). The stream plays again here when it is back.');
      }
      break;
    default:
      if (sessionClosed && (await stopSession())) setView('error', 'The connection to the server was lost.');
  }
}

// stopSession ends the player's session, if any, but keeps following the
// stream. It reports whether nothing else started meanwhile.
async function stopSession() {
  const gen = ++view.gen;
  // The stream is over or the server is gone: a DELETE would only fail.
  await view.conn.stop({ quiet: true, serverGone: true });
  detachPlayer();
  return gen === view.gen;
}

// follow keeps the event stream of path's room open: it tells at once when
// a publisher leaves, comes back or ends, and each of those makes the page
// ask the server about our stream.
function follow(path) {
  const p = parsePath(path);
  const token = el.token.value.trim();
  if (!p || !window.EventSource) return;
  if (view.room?.name === p.room && view.room.token === token && view.room.status !== 'closed') return;
  view.room?.close();
  const room = new Room(p.room, { token });
  view.room = room;
  room.addEventListener('change', (e) => {
    const { type, data } = e.detail;
    if (view.room !== room || type === 'chat' || type === 'viewers') return;
    if (type === 'snapshot' || data?.stream?.path === view.path) checkStream();
  });
  // The gateway closes event streams first when it shuts down: if media
  // stopped too, it is gone, even if its DTLS close got lost on the way.
  room.addEventListener('status', async (e) => {
    if (view.room !== room || e.detail.status === 'open' || view.state !== 'live') return;
    const pc = view.conn.session?.pc;
    if (pc && !(await mediaFlowing(pc, 400))) checkStream({ stalled: true });
  });
  room.connect();
}

async function stopWatching() {
  view.gen++;
  view.room?.close();
  view.room = null;
  await view.conn.stop({ quiet: true });
  detachPlayer();
  setView('idle');
}

function startWatching() {
  let path;
  try {
    path = readPath(el.watchRoom, el.watchName);
  } catch (err) {
    view.gen++;
    view.conn.stop({ quiet: true });
    detachPlayer();
    setView('error', err.message);
    return;
  }
  watch(path);
}

el.watchForm.addEventListener('submit', (e) => {
  e.preventDefault();
  startWatching();
});
el.stopWatch.addEventListener('click', stopWatching);

if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
  const onFrame = (_now, meta) => {
    view.presented = Math.max(view.presented + 1, meta.presentedFrames || 0);
    el.player.requestVideoFrameCallback(onFrame);
  };
  el.player.requestVideoFrameCallback(onFrame);
}

// ---- live streams ----

function describe(s) {
  const parts = [];
  if (!s.live) parts.push('publisher reconnecting…');
  const video = s.tracks?.find((t) => t.kind === 'video');
  if (video) parts.push(video.codec.mimeType.replace(/^video\//, ''));
  parts.push(`${s.viewers} viewer${s.viewers === 1 ? '' : 's'}`);
  if (s.live && s.bitrateIn > 0) parts.push(formatBitrate(s.bitrateIn));
  // How far behind the publisher this node is (its RTCP sender reports),
  // and for a relayed stream what the last hop added.
  const d = video?.delay;
  if (s.live && d) {
    parts.push(`${d.p50Ms.toFixed(1)} ms from publisher` + (d.hopMs != null ? ` (last hop ${d.hopMs.toFixed(1)} ms)` : ''));
  }
  return parts.join(' · ');
}

function markCurrent() {
  for (const b of el.streamList.querySelectorAll('button')) {
    const current = b.dataset.path === view.path && ['connecting', 'live', 'reconnecting'].includes(view.state);
    b.setAttribute('aria-current', String(current));
  }
}

function renderStreams(streams) {
  const focused = document.activeElement?.closest?.('#stream-list button')?.dataset.path;
  el.streamList.replaceChildren(
    ...streams.map((s) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'stream';
      b.dataset.path = s.path;
      b.dataset.state = s.live ? 'live' : 'reconnecting';
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = s.path;
      const meta = document.createElement('span');
      meta.className = 'meta';
      meta.textContent = describe(s);
      b.append(name, meta);
      b.setAttribute('aria-label', `Watch ${s.path}, ${meta.textContent}`);
      b.addEventListener('click', () => {
        const p = parsePath(s.path);
        if (p) fill(el.watchRoom, el.watchName, p);
        watch(s.path);
      });
      const li = document.createElement('li');
      li.append(b);
      if (s.path === focused) queueMicrotask(() => b.focus());
      return li;
    }),
  );
  el.noStreams.hidden = streams.length > 0;
  markCurrent();
}

// A stream in its grace period is listed as reconnecting, as the player
// shows it; an ended one is gone. A refresh asked for while one runs runs
// after it, so the list never shows older news than the player.
let refreshing = null;
let refreshAgain = false;
let listRefusedFor = null; // the token the server would not list streams for: not asked again
function refreshStreams() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      const token = el.token.value.trim();
      const refused = listRefusedFor === token;
      // Without the list, the health check alone (a refusal every 3 s
      // would be an error in the console each time).
      const res = await fetch(refused ? '/healthz' : '/api/v1/streams', { cache: 'no-store', headers: authHeaders() });
      if (refused && !res.ok) throw new Error(`${res.status}`);
      el.health.textContent = 'server online';
      el.health.dataset.ok = 'true';
      if (refused || res.status === 401 || res.status === 403) {
        // Listing streams takes an admin token; watching by path still works.
        listRefusedFor = token;
        renderStreams([]);
        el.noStreams.textContent = 'Listing live streams needs an admin token. Type a path to watch below.';
        return;
      }
      if (!res.ok) throw new Error(`${res.status}`);
      const body = await res.json();
      el.noStreams.textContent = 'No live streams yet.';
      renderStreams((body.streams || []).sort((a, b) => a.path.localeCompare(b.path)));
    } catch {
      el.health.textContent = 'server unreachable';
      el.health.dataset.ok = 'false';
      // Nothing is live here while the server is gone.
      renderStreams([]);
      el.noStreams.textContent = 'The server is unreachable.';
    } finally {
      refreshing = null;
      if (refreshAgain) {
        refreshAgain = false;
        refreshStreams();
      }
    }
  })();
  return refreshing;
}

setInterval(() => document.visibilityState === 'visible' && refreshStreams(), 3000);
document.addEventListener('visibilitychange', () => document.visibilityState === 'visible' && refreshStreams());
refreshStreams();

// ---- page lifecycle and deep links ----

// Leaving the page ends both sessions at the server at once, not after the
// ICE timeout: keepalive lets the DELETEs outlive the page.
window.addEventListener('pagehide', () => {
  pub.conn.stop({ quiet: true, keepalive: true });
  view.conn.stop({ quiet: true, keepalive: true });
  view.room?.close();
});

const query = new URLSearchParams(location.search);
if (query.has('publish')) {
  const p = parsePath(query.get('publish'));
  if (p) fill(el.pubRoom, el.pubName, p);
  else setPub('error', `Bad publish link "${query.get('publish')}": use ?publish=ROOM/NAME.`);
}
if (query.has('watch')) {
  const p = parsePath(query.get('watch'));
  if (p) {
    fill(el.watchRoom, el.watchName, p);
    watch(`${p.room}/${p.name}`);
  } else {
    setView('error', `Bad watch link "${query.get('watch')}": use ?watch=ROOM/NAME.`);
  }
}

// Hooks for tests and the console.
window.livegate = {
  get state() {
    return pub.state;
  },
  get error() {
    return pub.error;
  },
  publisher: {
    get state() {
      return pub.state;
    },
    get error() {
      return pub.error;
    },
    get path() {
      return pub.path;
    },
    get location() {
      return pub.conn.session?.location ?? null;
    },
    get pc() {
      return pub.conn.session?.pc ?? null;
    },
    start: goLive,
    stop: stopLive,
  },
  viewer: {
    get state() {
      return view.state;
    },
    get error() {
      return view.error;
    },
    // What the page says about the stream, e.g. "Publisher reconnecting…".
    get message() {
      return el.watchMsg.textContent;
    },
    get path() {
      return view.path;
    },
    get location() {
      return view.conn.session?.location ?? null;
    },
    get pc() {
      return view.conn.session?.pc ?? null;
    },
    // Decoded frames of the player, and frames presented (counted with
    // requestVideoFrameCallback): both grow while video flows.
    get frames() {
      return el.player.getVideoPlaybackQuality?.().totalVideoFrames ?? 0;
    },
    get presentedFrames() {
      return view.presented;
    },
    get videoWidth() {
      return el.player.videoWidth;
    },
    get videoHeight() {
      return el.player.videoHeight;
    },
    watch: (path) => {
      const p = parsePath(path);
      if (!p) throw new Error('path must be ROOM/NAME');
      fill(el.watchRoom, el.watchName, p);
      return watch(`${p.room}/${p.name}`);
    },
    stop: stopWatching,
  },
};
