// The host page's state (one object, st) and how it shows: the room's
// and the publisher's badges, the controls, and the event log.
import { LogPanel } from './log-panel.js';

export const $ = (id) => document.getElementById(id);

export const st = {
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
  // conn: set by host-publish.js
  pub: { state: 'idle', error: '', conn: null, stopStats: null, stats: null },
  screen: { state: 'idle', error: '', conn: null, media: null },
  micMuted: false,
  camMuted: false,
};

export const logPanel = new LogPanel($('log'));
export const log = (level, text) => logPanel.add(level, text);

export function setPhase(phase, msg = '') {
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

export function setPub(state, msg = '') {
  st.pub.state = state;
  st.pub.error = state === 'error' ? msg : '';
  const b = $('pub-state');
  b.dataset.state = state;
  b.textContent = state === 'live' ? 'live' : state === 'idle' ? 'not live' : state;
  $('pub-msg').textContent = msg;
  $('pub-msg').classList.toggle('error', state === 'error');
  renderControls();
}

export function setScreen(state, msg = '') {
  st.screen.state = state;
  st.screen.error = state === 'error' ? msg : '';
  $('screen-box').hidden = state === 'idle' || state === 'error';
  $('screen-state').dataset.state = state;
  $('screen-state').textContent = state === 'live' ? 'screen live' : `screen ${state}`;
  if (msg) $('pub-msg').textContent = msg;
  renderControls();
}

export function renderControls() {
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

export function canPublish() {
  return !st.me || st.me.open || (st.me.grants || []).includes('publish');
}

export function canChat() {
  return !st.me || st.me.open || (st.me.grants || []).includes('chat');
}
