// The /recordings page: lists recordings (admin key or admin token in
// ?access_token=) and plays one with the browser's own HLS support
// (Safari, and Chromium builds with native HLS).
import { api } from './api.js';

const list = document.getElementById('list'), player = document.getElementById('player');
const token = new URLSearchParams(location.search).get('access_token');
// The list goes with a header (the API refuses admin tokens in URLs); the
// player, which cannot send one, gets each recording's playbackUrl: a
// short-lived token for that recording only.
if (token) history.replaceState(null, '', location.pathname + location.hash);
const res = await api('/api/v1/recordings', token);
const body = await res.json();
list.textContent = '';
if (!res.ok) { list.innerHTML = '<tr><td colspan="6"></td></tr>'; list.querySelector('td').textContent = body.error; }
for (const r of body.recordings || []) {
  const tr = document.createElement('tr');
  for (const v of [r.stream, new Date(r.start).toLocaleString(), r.durationSeconds.toFixed(1) + ' s',
                   (r.sizeBytes / 1e6).toFixed(1) + ' MB', r.status + (r.error ? ' (' + r.error + ')' : '')]) {
    const td = document.createElement('td'); td.textContent = v; tr.append(td);
  }
  const td = document.createElement('td'), a = document.createElement('a');
  a.href = r.playbackUrl || r.playlist; a.textContent = 'play';
  let rec = r;
  a.onclick = async ev => {
    ev.preventDefault();
    rec = await fresh(rec);
    a.href = rec.playbackUrl || rec.playlist;
    player.src = a.href;
    player.play().catch(() => {});
  };
  td.append(a); tr.append(td); list.append(tr);
}

// A playback URL lives recording-playback-ttl (an hour by default): a page
// left open longer asks the API for a new one before playing, rather than
// handing the player a URL the gateway now refuses; so does one with less
// than 5 minutes left. The player fetches segments with the same token, so
// a playback that outlasts the URL still stops (play again to renew).
async function fresh(r) {
  const left = r.playbackExpiresAt ? Date.parse(r.playbackExpiresAt) - Date.now() : Infinity;
  if (left > 5 * 60_000) return r;
  const res = await api('/api/v1/recordings/' + encodeURIComponent(r.id), token);
  if (!res.ok) return r; // the gateway's refusal then shows in the player
  return res.json();
}
