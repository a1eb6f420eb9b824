// The front page's publisher: the camera preview and going live with it
// (WHIP to /whip/ROOM/NAME).
import { el, headers, needToken, showState, showStats } from './app-ui.js';
import { openMedia } from './media.js';
import { readPath } from './path-input.js';
import { refreshStreams } from './stream-list.js';
import { Connection, publish } from './whip-whep.js';

export const pub = {
  state: 'idle',
  error: '',
  path: '',
  media: null, // camera and microphone
  conn: new Connection(null, (state, c) => onPubChange(state, c)),
  stopStats: null,
};

export function setPub(state, msg = '') {
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
  const media = await openMedia();
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

export function goLive() {
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
    return publish(`/whip/${path}`, media, { headers: headers(), ...opts });
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

export async function stopLive() {
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
