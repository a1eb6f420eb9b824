// The host page's WHIP sessions: the camera (/whip/ROOM/IDENTITY) and the
// screen share (/whip/ROOM/IDENTITY-screen).
import { authHeaders } from './api.js';
import { startMedia } from './host-media.js';
import { $, log, setPub, setScreen, st } from './host-state.js';
import { SCREEN_SUFFIX } from './room.js';
import { format, statsLoop } from './stats.js';
import { Connection, publish } from './whip-whep.js';

st.pub.conn = new Connection(null, (...a) => onPubChange(...a));
st.screen.conn = new Connection(null, (...a) => onScreenChange(...a));

function whipURL(name) {
  const q = st.me?.open && st.name ? `?name=${encodeURIComponent(st.name)}` : '';
  return `/whip/${st.room}/${name}${q}`;
}

export function goLive() {
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

export function endPublishing(opts) {
  stopPubStats();
  return st.pub.conn.stop({ quiet: true, ...opts });
}

export async function stopLive() {
  const was = st.pub.state;
  await endPublishing();
  setPub('idle', was === 'live' ? 'Stopped. The others no longer see you.' : '');
  if (was === 'live') log('info', `Stopped publishing ${st.room}/${st.identity}`);
}

export function shareScreen() {
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

export function endScreen(opts) {
  const stopped = st.screen.conn.stop({ quiet: true, ...opts });
  releaseScreen();
  return stopped;
}

export async function stopScreen() {
  const was = st.screen.state;
  await endScreen();
  setScreen('idle');
  if (was === 'live') log('info', 'Stopped sharing the screen');
}
