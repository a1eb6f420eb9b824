// The host page's camera and microphone: opened once, switched while
// live, muted, and the microphone's level meter.
import { audioConstraints as audioConstraintsOf, fillDeviceSelects, videoConstraints as videoConstraintsOf } from './devices.js';
import { $, log, renderControls, st } from './host-state.js';
import { LevelMeter } from './level-meter.js';
import { mediaError, openMedia as openMediaOf } from './media.js';

const videoConstraints = () => videoConstraintsOf($('camera-select'));
const audioConstraints = () => audioConstraintsOf($('mic-select'));

// startMedia opens the camera and microphone once, however many callers
// ask at the same time.
let mediaPending = null;
export function startMedia() {
  if (st.media) return Promise.resolve(st.media);
  mediaPending ??= openMedia().finally(() => {
    mediaPending = null;
  });
  return mediaPending;
}

async function openMedia() {
  const media = await openMediaOf(videoConstraints(), audioConstraints());
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

export function stopMedia() {
  st.media?.getTracks().forEach((t) => t.stop());
  st.media = null;
  meter.attach(null);
  $('preview').srcObject = null;
  $('preview-off').hidden = false;
  renderControls();
}

export function listDevices() {
  return fillDeviceSelects($('camera-select'), $('mic-select'), st.media);
}

// switchDevice opens the newly selected camera or microphone and swaps it
// into the preview and, when live, into the running session.
export async function switchDevice(kind) {
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

export function muteMic(on = !st.micMuted) {
  st.micMuted = !!on;
  applyMutes();
  log('info', st.micMuted ? 'Microphone muted' : 'Microphone on');
  renderControls();
}

export function muteCamera(on = !st.camMuted) {
  st.camMuted = !!on;
  applyMutes();
  $('preview-off').hidden = !st.camMuted && !!st.media?.getVideoTracks().length;
  $('preview-off').textContent = st.camMuted ? 'Camera off' : 'No camera';
  log('info', st.camMuted ? 'Camera off' : 'Camera on');
  renderControls();
}

export const meter = new LevelMeter($('meter-bar'), $('meter'));
