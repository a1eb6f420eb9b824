// A grid of players for a room's streams: one WHEP session per stream,
// added and removed as the room changes.
//
//   const grid = new StreamGrid(container, { headers: () => auth, exclude: 'alice' });
//   room.addEventListener('change', () => grid.update(room.streams()));

import { Connection, play } from './whip-whep.js';
import { format, sampler } from './stats.js';

const RETRY_MS = [500, 1000, 2000, 4000, 8000];

/** One stream's player. */
class Tile {
  constructor(grid, s) {
    this.grid = grid;
    this.path = s.path;
    this.identity = s.identity;
    this.screen = !!s.screen;
    this.hostName = s.hostName || s.identity;
    this.streamState = s.state; // live or reconnecting, from the room
    // Of the player: connecting, playing, reconnecting, disconnected (the
    // server ended our session or cannot be reached), error.
    this.state = 'connecting';
    this.error = '';
    this.conn = new Connection(
      (opts) => play(`/whep/${this.path}`, { headers: this.grid.headers(), ...opts }),
      (state, c) => this.onConnection(state, c),
    );
    this.attempt = 0;
    this.retry = null;
    this.stalled = false; // no media for a second while playing
    this.presented = 0;
    this.stats = null;
    this.sample = null;

    const el = document.createElement('figure');
    el.className = 'tile';
    el.dataset.path = s.path;
    el.dataset.identity = s.identity;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = !grid.sound;
    const cap = document.createElement('figcaption');
    const name = document.createElement('span');
    name.className = 'who';
    const badge = document.createElement('span');
    badge.className = 'badge';
    cap.append(name, badge);
    const overlay = document.createElement('p');
    overlay.className = 'overlay';
    overlay.hidden = !grid.showStats;
    el.append(video, cap, overlay);
    Object.assign(this, { el, video, nameEl: name, badge, overlay });
    this.render();

    if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
      const onFrame = (_now, meta) => {
        this.presented = Math.max(this.presented + 1, meta.presentedFrames || 0);
        if (this.el.isConnected) video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    }
    this.statsTimer = setInterval(() => this.sampleStats(), 1000);
  }

  render() {
    this.nameEl.textContent = this.hostName + (this.screen ? ' · screen' : '');
    let state = this.state;
    // No media for a while: the publisher is gone or stuck, perhaps before
    // the room knows.
    if (this.streamState === 'reconnecting' || (state === 'playing' && this.stalled)) state = 'reconnecting';
    this.badge.dataset.state = state === 'playing' ? 'live' : state;
    this.badge.textContent = state === 'playing' ? 'live' : state;
    this.badge.title = this.error;
    this.el.dataset.state = state;
  }

  update(s) {
    this.hostName = s.hostName || s.identity;
    const was = this.streamState;
    this.streamState = s.state;
    // The stream is live again but our session died meanwhile: start over.
    if (s.state === 'live' && was !== 'live' && !this.conn.busy) this.start();
    this.render();
  }

  start() {
    clearTimeout(this.retry);
    this.conn.start();
  }

  onConnection(state, c) {
    switch (state) {
      case 'connecting':
        this.detach();
        this.state = 'connecting';
        break;
      case 'live':
        if (this.video.srcObject !== c.session.stream) {
          this.sample = sampler(c.session.pc, 'inbound-rtp');
          this.video.srcObject = c.session.stream;
          this.playVideo();
        }
        if (this.state !== 'reconnecting') this.grid.log('info', `Playing ${this.path}`);
        this.attempt = 0;
        this.state = 'playing';
        this.error = '';
        break;
      case 'interrupted':
        this.state = 'reconnecting';
        break;
      case 'ended':
        // The server ended the session: the stream is over (the room says
        // so soon) or the gateway is shutting down.
        return this.fail(new Error('the server ended the session'), 'disconnected');
      case 'failed':
        return this.fail(new Error('connection lost'));
      case 'error':
        return this.fail(c.error, c.error.code === 'unreachable' ? 'disconnected' : 'error');
    }
    this.render();
  }

  playVideo() {
    this.video.muted = !this.grid.sound;
    this.video.play().catch((err) => {
      // Sound needs a click on this page first: play muted meanwhile.
      if (err.name === 'NotAllowedError' && !this.video.muted) {
        this.video.muted = true;
        this.grid.soundBlocked();
        this.video.play().catch(() => {});
      }
    });
  }

  fail(err, state = 'error') {
    this.detach();
    this.state = state;
    this.error = err.message;
    this.render();
    if (this.streamState !== 'live') return; // wait for the stream to come back
    const wait = RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
    this.attempt++;
    this.grid.log('warn', `Cannot play ${this.path}: ${err.message}; retrying in ${wait / 1000} s`);
    this.retry = setTimeout(() => this.start(), wait);
  }

  async sampleStats() {
    if (!this.sample) return;
    try {
      this.stats = await this.sample();
    } catch {
      return;
    }
    if (this.grid.showStats) this.overlay.textContent = format(this.stats);
    const stalled = this.stats.sinceLastPacket > 1000;
    if (stalled !== this.stalled) {
      this.stalled = stalled;
      this.render();
    }
  }

  detach() {
    this.sample = null;
    this.stalled = false;
    this.video.srcObject = null;
  }

  // stop removes the tile. serverGone: the stream ended, so the server
  // ends its sessions itself (a DELETE could only race it to a 404).
  stop({ keepalive = false, serverGone = false } = {}) {
    clearTimeout(this.retry);
    clearInterval(this.statsTimer);
    this.conn.stop({ quiet: true, keepalive, serverGone });
    this.detach();
    this.el.remove();
  }

  /** For tests and the console. */
  info() {
    return {
      path: this.path,
      identity: this.identity,
      name: this.hostName,
      screen: this.screen,
      state: this.state,
      streamState: this.streamState,
      error: this.error,
      frames: this.video.getVideoPlaybackQuality?.().totalVideoFrames ?? 0,
      presented: this.presented,
      width: this.video.videoWidth,
      height: this.video.videoHeight,
      muted: this.video.muted,
      audio: this.video.srcObject?.getAudioTracks().some((t) => t.readyState === 'live') ?? false,
      stats: this.stats,
    };
  }
}

/**
 * StreamGrid plays every stream it is given with update(). Options:
 * headers() returns the request headers (the token), exclude is an identity
 * whose streams are not played (our own), log(level, text) reports what
 * happens, onChange() runs after tiles come or go, ended(path) tells whether
 * a stream that went away ended at the server (Room.ended).
 */
export class StreamGrid {
  constructor(
    container,
    { headers = () => ({}), exclude = null, log = () => {}, onChange = () => {}, sound = true, ended = () => false } = {},
  ) {
    this.container = container;
    this.ended = ended;
    this.headers = headers;
    this.exclude = exclude;
    this.log = log;
    this.onChange = onChange;
    this.sound = sound;
    this.showStats = true;
    this.tiles = new Map(); // path -> Tile
    this.blocked = false;
    this.onSoundBlocked = () => {};
  }

  /** Makes the grid show exactly these streams (from Room.streams()). */
  update(streams) {
    const want = new Map();
    for (const s of streams) {
      if (s.identity !== this.exclude) want.set(s.path, s);
    }
    let changed = false;
    for (const [path, tile] of this.tiles) {
      if (!want.has(path)) {
        tile.stop({ serverGone: this.ended(path) });
        this.tiles.delete(path);
        this.log('info', `Stopped playing ${path}`);
        changed = true;
      }
    }
    const sorted = [...want.values()].sort(
      (a, b) => a.identity.localeCompare(b.identity) || Number(a.screen) - Number(b.screen),
    );
    for (const s of sorted) {
      let tile = this.tiles.get(s.path);
      if (tile) {
        tile.update(s);
        continue;
      }
      tile = new Tile(this, s);
      this.tiles.set(s.path, tile);
      changed = true;
      if (s.state === 'live') tile.start();
    }
    // Keep the DOM in the sorted order.
    const order = sorted.map((s) => this.tiles.get(s.path).el);
    if (order.some((el, i) => this.container.children[i] !== el)) this.container.append(...order);
    if (changed) this.onChange();
  }

  setStats(on) {
    this.showStats = on;
    for (const t of this.tiles.values()) {
      t.overlay.hidden = !on;
      if (on) t.overlay.textContent = format(t.stats);
    }
  }

  /** Unmutes every player (call from a click). */
  enableSound() {
    this.sound = true;
    this.blocked = false;
    for (const t of this.tiles.values()) t.playVideo();
  }

  soundBlocked() {
    if (this.blocked) return;
    this.blocked = true;
    this.onSoundBlocked();
  }

  stopAll(opts) {
    for (const t of this.tiles.values()) t.stop(opts);
    this.tiles.clear();
    this.onChange();
  }

  info() {
    return [...this.tiles.values()].map((t) => t.info());
  }
}
