// The front page's elements and what its publisher and player share: the
// state badges, the statistics line and the access token field.
import { authHeaders } from './api.js';
import { pathFields } from './path-input.js';
import { format, statsLoop } from './stats.js';

const $ = (id) => document.getElementById(id);

for (const f of document.querySelectorAll('fieldset.path[data-prefix]')) pathFields(f);

export const el = {
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

export function showState(badge, msgEl, state, msg) {
  badge.dataset.state = state;
  badge.textContent = state;
  msgEl.textContent = msg || '';
  msgEl.classList.toggle('error', state === 'error');
}

/** The access token typed in (or taken from the link), if any. */
export function token() {
  return el.token.value.trim();
}

// headers carries the access token, if any, as a bearer token.
export function headers() {
  return authHeaders(token());
}

// needToken opens the token field when the server asked for a token.
export function needToken(err) {
  if (err?.status === 401 && !el.auth.open) el.auth.open = true;
}

// showStats writes a line of statistics of pc into out once a second.
export function showStats(pc, type, out, onSample = () => {}) {
  const stop = statsLoop(pc, type, (s) => {
    out.textContent = format(s);
    onSample(s);
  });
  return () => {
    stop();
    out.textContent = '';
  };
}
