// The livegate page: go live with the camera (WHIP) and watch live streams
// (WHEP). Deep links: /?watch=ROOM/NAME plays at once, /?publish=ROOM/NAME
// fills in the path to go live on. The publisher is in app-publish.js, the
// player in app-watch.js, the list of live streams in stream-list.js.
import { takeTokenFromURL } from './api.js';
import { pub, goLive, setPub, stopLive } from './app-publish.js';
import { el } from './app-ui.js';
import { setView, stopWatching, view, watch } from './app-watch.js';
import { readOnly } from './hooks.js';
import { fill, parsePath } from './path-input.js';
import { refreshStreams } from './stream-list.js';

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
window.livegate = readOnly(
  { state: () => pub.state, error: () => pub.error },
  {
    publisher: readOnly(
      {
        state: () => pub.state,
        error: () => pub.error,
        path: () => pub.path,
        location: () => pub.conn.session?.location ?? null,
        pc: () => pub.conn.session?.pc ?? null,
      },
      { start: goLive, stop: stopLive },
    ),
    viewer: readOnly(
      {
        state: () => view.state,
        error: () => view.error,
        // What the page says about the stream, e.g. "Publisher reconnecting…".
        message: () => el.watchMsg.textContent,
        path: () => view.path,
        location: () => view.conn.session?.location ?? null,
        pc: () => view.conn.session?.pc ?? null,
        // Decoded frames of the player, and frames presented (counted with
        // requestVideoFrameCallback): both grow while video flows.
        frames: () => el.player.getVideoPlaybackQuality?.().totalVideoFrames ?? 0,
        presentedFrames: () => view.presented,
        videoWidth: () => el.player.videoWidth,
        videoHeight: () => el.player.videoHeight,
      },
      {
        watch: (path) => {
          const p = parsePath(path);
          if (!p) throw new Error('path must be ROOM/NAME');
          fill(el.watchRoom, el.watchName, p);
          return watch(`${p.room}/${p.name}`);
        },
        stop: stopWatching,
      },
    ),
  },
);
