// The host page's line about the room's composite: whether the hosts are
// being mixed into one stream (ROOM/composite), since when, and where that
// stream is pushed (RTMP targets with their keys masked). It polls
// GET /api/v1/rooms/ROOM/composite, which answers state "none" for a room
// without a composite.
import { api } from './api.js';

const POLL_MS = 3000;

function clock(iso) {
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) || t.getFullYear() < 2000 ? '' : t.toLocaleTimeString();
}

export class CompositeStatus {
  constructor(el, room, token) {
    this.el = el;
    this.url = `/api/v1/rooms/${encodeURIComponent(room)}/composite`;
    this.token = token;
    this.timer = 0;
    this.last = null;
  }

  start() {
    this.poll();
    this.timer = setInterval(() => this.poll(), POLL_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = 0;
    this.el.hidden = true;
  }

  async poll() {
    let res;
    try {
      res = await api(this.url, this.token);
    } catch {
      return; // unreachable for a moment: keep the last line
    }
    if (!res.ok) {
      // A token that may not read the room's composite: say nothing.
      this.el.hidden = true;
      return;
    }
    this.render(await res.json());
  }

  render(c) {
    this.last = c;
    this.el.hidden = false;
    this.el.dataset.state = c.state;
    if (c.state === 'none') {
      this.el.textContent = 'Not composited: no single mixed stream of this room is being made.';
      return;
    }
    const since = clock(c.since);
    const o = c.options || {};
    let text = `Composite ${c.stream}: ${c.state}${since ? ` since ${since}` : ''}` +
      ` · ${o.layout}, ${(c.tiles || []).length} host${(c.tiles || []).length === 1 ? '' : 's'}, ${o.width}x${o.height}`;
    const pushes = c.pushes || [];
    if (pushes.length === 0) {
      text += ' · not pushed';
    }
    for (const p of pushes) {
      const at = clock(p.connectedAt);
      text += ` · pushed to ${p.url}: ${p.state}${p.state === 'live' && at ? ` since ${at}` : ''}`;
      if (p.lastError && p.state !== 'live') text += ` (${p.lastError})`;
    }
    this.el.textContent = text;
  }
}
