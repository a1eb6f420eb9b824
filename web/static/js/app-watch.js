// The front page's player: watch one stream (WHEP from /whep/ROOM/NAME)
// and follow it through its publisher leaving, coming back and ending, and
// the gateway going away and coming back.
import { api } from './api.js';
import { el, headers, needToken, showState, showStats, token } from './app-ui.js';
import { fill, parsePath, readPath } from './path-input.js';
import { Room } from './room.js';
import { formatBitrate, sinceLastPacket } from './stats.js';
import { markCurrent, refreshStreams, setPlayer } from './stream-list.js';
import { Connection, play } from './whip-whep.js';

// The player's states: idle; connecting; live; reconnecting (the publisher
// left and the server keeps the stream for its grace period, in case they
// come back); ended (the stream is over: it plays again here if it comes
// back); disconnected (the gateway went away); error.
export const view = {
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

setPlayer({
  playing: () => (['connecting', 'live', 'reconnecting'].includes(view.state) ? view.path : null),
  pick: (path) => {
    const p = parsePath(path);
    if (p) fill(el.watchRoom, el.watchName, p);
    watch(path);
  },
});

export function setView(state, msg = '') {
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

export function watch(path) {
  view.gen++;
  if (path !== view.path) {
    view.layer = '';
    el.quality.value = '';
    el.qualityLabel.hidden = true;
  }
  view.path = path;
  follow(path);
  const layer = view.layer ? `?layer=${encodeURIComponent(view.layer)}` : '';
  return view.conn.start((opts) => play(`/whep/${path}${layer}`, { headers: headers(), ...opts }));
}

// ---- quality (simulcast layers) ----

// showQuality fills the quality menu with the stream's simulcast layers
// (from /api/v1/streams); a stream without layers has no menu.
async function showQuality(path) {
  let layers = [];
  try {
    const res = await api(`/api/v1/streams/${path}`, token());
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
    res = await api(`/api/v1/streams/${path}`, token());
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
    return (await api('/healthz')).ok;
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
  const tok = token();
  if (!p || !window.EventSource) return;
  if (view.room?.name === p.room && view.room.token === tok && view.room.status !== 'closed') return;
  view.room?.close();
  const room = new Room(p.room, { token: tok });
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

export async function stopWatching() {
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
