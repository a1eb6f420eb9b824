// WHIP (RFC 9725) publish and WHEP play for browsers.
//
//   const s = await publish('/whip/room/name', mediaStream);
//   await s.connected;           // media flows
//   await s.stop();              // DELETE the session resource
//
//   const v = await play('/whep/room/name');
//   video.srcObject = v.stream;
//
// Both send one offer with every ICE candidate in it (no trickle), wait for
// the 201 answer and keep the Location header for the DELETE.
//
// ICE servers (STUN/TURN, with credentials) come from the server as RFC
// 9725 Link headers (rel="ice-server"). They must be in the peer connection
// before it gathers candidates, so without opts.iceServers the first
// session of an endpoint asks for them with an OPTIONS request (with the
// same headers as the POST); the list of every 201 is kept for the next. Server errors
// (JSON {"code": "...", "error": "message"}) are thrown as APIError (api.js)
// with the server's message.
//
// A session's state is the peer connection's, except that it is 'closed' as
// soon as the server ends the session: the server's DTLS close arrives at
// once, while the browser's connection state would stay 'connected' until
// ICE consent checks give up, tens of seconds later.
//
// Pages use a Connection, which runs one session at a time and gives it one
// state to show:
//
//   const c = new Connection((opts) => play('/whep/room/name', opts), (state) => render(state, c.error));
//   c.start();                   // connecting, then live (or error)
//   c.stop();                    // idle

import { apiError } from './api.js';

const SDP = 'application/sdp';

/**
 * Publishes every track of stream to a WHIP endpoint.
 * Options: iceServers (default none), headers (e.g. Authorization),
 * videoCodec (MIME type preferred first, default 'video/H264'; null keeps the
 * browser's order), gatherTimeout (ms, default 2000), connectTimeout (ms,
 * default 15000), signal (AbortSignal), onStateChange(connectionState).
 * The caller keeps ownership of stream: stop() does not stop its tracks.
 */
export async function publish(url, stream, opts = {}) {
  const pc = newPeerConnection({ ...opts, iceServers: await iceServersFor(url, opts) });
  try {
    for (const track of stream.getTracks()) {
      const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      const codec = opts.videoCodec === undefined ? 'video/H264' : opts.videoCodec;
      if (track.kind === 'video' && codec) preferCodec(tr, codec);
    }
    return await negotiate(url, pc, opts);
  } catch (err) {
    pc.close();
    throw err;
  }
}

/**
 * Plays a stream from a WHEP endpoint: session.stream is a MediaStream that
 * receives the video and audio tracks. Options as for publish (no videoCodec).
 */
export async function play(url, opts = {}) {
  const pc = newPeerConnection({ ...opts, iceServers: await iceServersFor(url, opts) });
  const stream = new MediaStream();
  pc.addEventListener('track', (e) => stream.addTrack(e.track));
  try {
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const session = await negotiate(url, pc, opts);
    session.stream = stream;
    return session;
  } catch (err) {
    pc.close();
    throw err;
  }
}

/**
 * Puts codecs of mimeType first in the transceiver's preferences. For H.264
 * it prefers packetization-mode=1, constrained baseline first, which every
 * downstream (HLS, RTMP) can pass through. Returns whether it applied.
 */
export function preferCodec(transceiver, mimeType) {
  if (typeof transceiver.setCodecPreferences !== 'function') return false;
  const want = mimeType.toLowerCase();
  const kind = want.split('/')[0];
  const rank = (c) => {
    if (c.mimeType.toLowerCase() !== want) return 3;
    if (want !== 'video/h264') return 0;
    const fmtp = c.sdpFmtpLine || '';
    if (!/packetization-mode=1/.test(fmtp)) return 2;
    return /profile-level-id=42e0/i.test(fmtp) ? 0 : 1;
  };
  // Chromium checks preferences against the receiver's capabilities, the
  // spec now allows the sender's too: try both.
  for (const caps of [RTCRtpReceiver.getCapabilities?.(kind), RTCRtpSender.getCapabilities?.(kind)]) {
    const codecs = caps?.codecs;
    if (!codecs?.some((c) => rank(c) < 3)) continue;
    const sorted = codecs
      .map((c, i) => ({ c, i, r: rank(c) }))
      .sort((a, b) => a.r - b.r || a.i - b.i)
      .map((x) => x.c);
    try {
      transceiver.setCodecPreferences(sorted);
      return true;
    } catch {
      // try the other capability list
    }
  }
  return false;
}

/** A WHIP or WHEP session: the peer connection and its server resource. */
export class Session {
  constructor(pc, location, etag, opts) {
    this.pc = pc;
    this.location = location; // absolute URL of the session resource
    this.etag = etag;
    this.stream = null; // set by play()
    // The server ended the session (its DTLS close arrived): there is
    // nothing left to DELETE.
    this.endedByServer = false;
    this._headers = opts.headers || {};
    this._stopped = null;
    this._listeners = new Set();
    this._last = pc.connectionState;
    if (opts.onStateChange) this._listeners.add(opts.onStateChange);
    pc.addEventListener('connectionstatechange', () => this._changed());
    this.connected = connected(this, opts.connectTimeout ?? 15000);
    this.connected.catch(() => {}); // callers need not await it
  }

  /**
   * new, connecting, connected, disconnected, failed or closed: the peer
   * connection's state, or closed once the server ended the session.
   */
  get state() {
    return this.endedByServer ? 'closed' : this.pc.connectionState;
  }

  /** Calls f(state) on every change of state until the returned function is called. */
  onState(f) {
    this._listeners.add(f);
    return () => this._listeners.delete(f);
  }

  // _watchTransports notices the server's DTLS close. Transports exist once
  // the answer is applied; with max-bundle there is one.
  _watchTransports() {
    const transports = new Set();
    for (const t of this.pc.getTransceivers()) {
      for (const dtls of [t.sender?.transport, t.receiver?.transport]) if (dtls) transports.add(dtls);
    }
    for (const dtls of transports) {
      dtls.addEventListener('statechange', () => {
        // pc.close() closes transports without events; stop() sets _stopped
        // first in any case.
        if (dtls.state === 'closed' && !this._stopped) {
          this.endedByServer = true;
          this._changed();
        }
      });
    }
  }

  _changed() {
    const s = this.state;
    if (s === this._last) return;
    this._last = s;
    for (const f of [...this._listeners]) f(s);
  }

  /**
   * Deletes the session resource and closes the peer connection, or only
   * closes it when the server ended the session already (a DELETE would
   * earn a 404, or a refused connection when the gateway went away). Safe
   * to call more than once. keepalive lets the DELETE outlive the page (use
   * it from pagehide); serverGone says the caller knows the server has no
   * session any more.
   */
  stop({ keepalive = false, serverGone = false } = {}) {
    if (this._stopped) return this._stopped;
    this._stopped = Promise.resolve();
    const del = this.location && !this.endedByServer && !serverGone;
    if (!del || keepalive) {
      this.pc.close(); // a page going away takes its connections with it anyway
    }
    if (del) {
      const deleted = fetch(this.location, { method: 'DELETE', headers: this._headers, keepalive }).then(
        () => {}, // a 404 means the server ended it meanwhile, which is what we wanted
        () => {},
      );
      // The peer connection closes after the DELETE: its DTLS close would
      // otherwise reach the server first and end the session, so that the
      // DELETE finds nothing (a 404 error in the console).
      this._stopped = Promise.race([deleted, new Promise((r) => setTimeout(r, 2000))]).then(() => this.pc.close());
    }
    return this._stopped;
  }
}

/**
 * Connection runs a page's WHIP or WHEP sessions, one at a time: each
 * start() supersedes the one before, and work of a superseded start is
 * dropped when it completes. States, told to onChange(state, connection,
 * previous state) on each change: idle; connecting; live; interrupted (the
 * network dropped and ICE is trying to recover; live again when it does);
 * and after a session: ended (the server ended it: the stream is over or
 * the gateway shut down), failed (the connection failed) or error (it
 * never started; see error). open(opts) starts a session with publish()
 * or play(), passing opts (signal, onStateChange) on.
 */
export class Connection {
  constructor(open, onChange = () => {}) {
    this.open = open;
    this.onChange = onChange;
    this.state = 'idle';
    this.error = null; // of state error: what open() threw
    this.session = null;
    this._gen = 0;
    this._abort = null;
  }

  /** Starts a session (with open, if given, from now on) and resolves when it is live or failed. */
  async start(open = this.open) {
    this.open = open;
    const gen = ++this._gen;
    await this._end();
    if (gen !== this._gen) return;
    const abort = new AbortController();
    this._abort = abort;
    this.state = 'idle'; // each start is news, also one that supersedes a start
    this._set('connecting');
    try {
      const session = await open({
        signal: abort.signal,
        onStateChange: (s) => gen === this._gen && this._changed(s),
      });
      if (gen !== this._gen) {
        session.stop();
        return;
      }
      this.session = session;
      await session.connected;
      if (gen !== this._gen) return;
      this._set('live');
    } catch (err) {
      if (gen !== this._gen) return;
      const ended = !!this.session?.endedByServer;
      await this._end();
      if (gen !== this._gen) return;
      this._set(ended ? 'ended' : 'error', err);
    }
  }

  /** Whether a start() is connecting or its session is up. */
  get busy() {
    return this.state === 'connecting' || this.state === 'live' || this.state === 'interrupted';
  }

  /**
   * Ends the session (see Session.stop for the options) and goes idle,
   * without telling onChange when quiet is set (the page leaves).
   */
  async stop({ quiet = false, ...opts } = {}) {
    this._gen++;
    const was = this.state;
    this.state = 'idle';
    this.error = null;
    await this._end(opts);
    if (!quiet && was !== 'idle') this.onChange('idle', this, was);
  }

  // _changed follows the session after it first connected (start()
  // handles the way there).
  _changed(s) {
    if (!this.session || (this.state !== 'live' && this.state !== 'interrupted')) return;
    if (s === 'disconnected') {
      this._set('interrupted');
    } else if (s === 'connected') {
      this._set('live');
    } else if (s === 'failed' || s === 'closed') {
      this._gen++;
      const ended = this.session.endedByServer;
      // No DELETE after an ICE failure either: the server's ICE gives up
      // sooner than the browser's, so the session is gone there already.
      this._end({ serverGone: true });
      this._set(ended ? 'ended' : 'failed');
    }
  }

  _set(state, err = null) {
    const prev = this.state;
    if (state === prev && !err) return;
    this.state = state;
    this.error = err;
    this.onChange(state, this, prev);
  }

  _end(opts) {
    this._abort?.abort();
    this._abort = null;
    const s = this.session;
    this.session = null;
    return s ? s.stop(opts) : Promise.resolve();
  }
}

// iceCache holds each endpoint's ICE servers: {servers, until}.
const iceCache = new Map();
// Credentials are valid for hours; ask again well before.
const iceCacheMs = 10 * 60 * 1000;

async function iceServersFor(url, opts) {
  if (opts.iceServers) return opts.iceServers;
  const key = new URL(url, location.href).href;
  const hit = iceCache.get(key);
  if (hit && hit.until > Date.now()) return hit.servers;
  let servers = [];
  try {
    const res = await fetch(url, { method: 'OPTIONS', headers: { ...opts.headers }, signal: opts.signal });
    servers = parseIceLinks(res.headers.get('Link'));
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    // No list: the POST may still work without one.
  }
  iceCache.set(key, { servers, until: Date.now() + iceCacheMs });
  return servers;
}

/**
 * Parses Link header values (fetch joins several with ", ") into
 * RTCIceServer entries: the rel="ice-server" links, with their username
 * and credential.
 */
export function parseIceLinks(header) {
  const out = [];
  if (!header) return out;
  const re = /<([^>]*)>((?:\s*;\s*[A-Za-z0-9_-]+(?:=(?:"[^"]*"|[^;,\s]*))?)*)/g;
  for (const m of header.matchAll(re)) {
    const params = {};
    for (const p of m[2].matchAll(/;\s*([A-Za-z0-9_-]+)(?:=(?:"([^"]*)"|([^;,\s]*)))?/g)) {
      params[p[1].toLowerCase()] = p[2] ?? p[3] ?? '';
    }
    if (!(params.rel || '').split(/\s+/).includes('ice-server')) continue;
    const server = { urls: m[1] };
    if (params.username !== undefined) server.username = params.username;
    if (params.credential !== undefined) server.credential = params.credential;
    out.push(server);
  }
  return out;
}

function newPeerConnection(opts) {
  return new RTCPeerConnection({ iceServers: opts.iceServers || [], bundlePolicy: 'max-bundle' });
}

async function negotiate(url, pc, opts) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc, opts.gatherTimeout ?? 2000, opts.signal);

  let res;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { ...opts.headers, 'Content-Type': SDP },
      body: pc.localDescription.sdp,
      signal: opts.signal,
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw Object.assign(new Error(`cannot reach the server (${err.message})`), { code: 'unreachable' });
  }
  if (res.status !== 201) throw await apiError(res);
  if (!opts.iceServers || res.headers.has('Link')) {
    // Kept for the next session (a reconnect), with fresh credentials.
    iceCache.set(new URL(url, location.href).href, { servers: parseIceLinks(res.headers.get('Link')), until: Date.now() + iceCacheMs });
  }
  const answer = await res.text();
  const loc = res.headers.get('Location');
  // res.url is where a redirect (307 to a less loaded edge) led.
  const session = new Session(pc, loc ? new URL(loc, res.url || new URL(url, location.href)).href : null,
    res.headers.get('ETag'), opts);
  try {
    if (opts.signal?.aborted) throw opts.signal.reason;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    session._watchTransports();
  } catch (err) {
    session.stop();
    throw err;
  }
  return session;
}

/**
 * iceGathered resolves once every candidate is in the local description, or
 * after ms: host candidates come at once, the rest is not worth waiting for.
 */
export function iceGathered(pc, ms, signal) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      signal?.removeEventListener('abort', abort);
      resolve();
    };
    const check = () => pc.iceGatheringState === 'complete' && done();
    const abort = () => {
      done();
      reject(signal.reason);
    };
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
    signal?.addEventListener('abort', abort);
  });
}

function connected(session, ms) {
  return new Promise((resolve, reject) => {
    let off = null;
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`no connection after ${Math.round(ms / 1000)} s (media blocked by a firewall?)`));
    }, ms);
    const finish = () => {
      clearTimeout(timer);
      off?.();
    };
    const check = (state) => {
      switch (state) {
        case 'connected':
          finish();
          resolve();
          break;
        case 'failed':
          finish();
          reject(new Error('connection failed (media blocked by a firewall?)'));
          break;
        case 'closed':
          finish();
          reject(new Error(session.endedByServer ? 'the server ended the session' : 'connection closed'));
          break;
      }
    };
    off = session.onState(check);
    check(session.state);
  });
}
