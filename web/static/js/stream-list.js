// The front page's list of live streams (GET /api/v1/streams, which takes
// an admin token), and the server's health beside it.
import { api } from './api.js';
import { el, token } from './app-ui.js';
import { formatBitrate } from './stats.js';

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

// player is set by the player: the path it plays (null when none), and
// how to play a stream of the list.
const player = { playing: () => null, pick: () => {} };

export function setPlayer(p) {
  Object.assign(player, p);
}

/** markCurrent marks the stream that plays in the list. */
export function markCurrent() {
  const playing = player.playing();
  for (const b of el.streamList.querySelectorAll('button')) {
    b.setAttribute('aria-current', String(b.dataset.path === playing));
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
      b.addEventListener('click', () => player.pick(s.path));
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
export function refreshStreams() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      const tok = token();
      const refused = listRefusedFor === tok;
      // Without the list, the health check alone (a refusal every 3 s
      // would be an error in the console each time).
      const res = await api(refused ? '/healthz' : '/api/v1/streams', tok);
      if (refused && !res.ok) throw new Error(`${res.status}`);
      el.health.textContent = 'server online';
      el.health.dataset.ok = 'true';
      if (refused || res.status === 401 || res.status === 403) {
        // Listing streams takes an admin token; watching by path still works.
        listRefusedFor = tok;
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
