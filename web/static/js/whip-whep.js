// WHIP (RFC 9725) publish and WHEP play for browsers. No dependencies.
//
//   const s = await publish('/whip/room/name', mediaStream);
//   await s.connected;           // media flows
//   await s.stop();              // DELETE the session resource
//
//   const v = await play('/whep/room/name');
//   video.srcObject = v.stream;
//
// Both send one offer with every ICE candidate in it (no trickle), wait for
// the 201 answer and keep the Location header for the DELETE. Server errors
// (JSON {"code": "...", "error": "message"}) are thrown as HTTPError with the
// server's message.

const SDP = 'application/sdp';

/** An error answer from a WHIP/WHEP server. */
export class HTTPError extends Error {
  constructor(message, status, code, body) {
    super(message);
    this.name = 'HTTPError';
    this.status = status; // HTTP status
    this.code = code; // the server's error code, e.g. "stream_not_found"
    this.body = body; // the parsed JSON body, if any
  }
}

/**
 * Publishes every track of stream to a WHIP endpoint.
 * Options: iceServers (default none), headers (e.g. Authorization),
 * videoCodec (MIME type preferred first, default 'video/H264'; null keeps the
 * browser's order), gatherTimeout (ms, default 2000), connectTimeout (ms,
 * default 15000), signal (AbortSignal), onStateChange(connectionState).
 * The caller keeps ownership of stream: stop() does not stop its tracks.
 */
export async function publish(url, stream, opts = {}) {
  const pc = newPeerConnection(opts);
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
  const pc = newPeerConnection(opts);
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
    this._headers = opts.headers || {};
    this._stopped = null;
    this.connected = connected(pc, opts.connectTimeout ?? 15000);
    this.connected.catch(() => {}); // callers need not await it
  }

  /** The peer connection state: new, connecting, connected, disconnected, failed or closed. */
  get state() {
    return this.pc.connectionState;
  }

  /**
   * Closes the peer connection and deletes the session resource. Safe to
   * call more than once. keepalive lets the DELETE outlive the page (use it
   * from pagehide).
   */
  stop({ keepalive = false } = {}) {
    if (!this._stopped) {
      this.pc.close();
      this._stopped = this.location
        ? fetch(this.location, { method: 'DELETE', headers: this._headers, keepalive }).then(
            () => {},
            () => {},
          )
        : Promise.resolve();
    }
    return this._stopped;
  }
}

function newPeerConnection(opts) {
  return new RTCPeerConnection({ iceServers: opts.iceServers || [], bundlePolicy: 'max-bundle' });
}

async function negotiate(url, pc, opts) {
  if (opts.onStateChange) {
    pc.addEventListener('connectionstatechange', () => opts.onStateChange(pc.connectionState));
  }
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
    throw new Error(`cannot reach the server (${err.message})`);
  }
  if (res.status !== 201) throw await httpError(res);
  const answer = await res.text();
  const loc = res.headers.get('Location');
  const session = new Session(pc, loc ? new URL(loc, new URL(url, location.href)).href : null,
    res.headers.get('ETag'), opts);
  try {
    if (opts.signal?.aborted) throw opts.signal.reason;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  } catch (err) {
    session.stop();
    throw err;
  }
  return session;
}

// iceGathered resolves once every candidate is in the local description, or
// after ms: host candidates come at once, the rest is not worth waiting for.
function iceGathered(pc, ms, signal) {
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

function connected(pc, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`no connection after ${Math.round(ms / 1000)} s (media blocked by a firewall?)`));
    }, ms);
    const finish = () => {
      clearTimeout(timer);
      pc.removeEventListener('connectionstatechange', check);
    };
    const check = () => {
      switch (pc.connectionState) {
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
          reject(new Error('connection closed'));
          break;
      }
    };
    pc.addEventListener('connectionstatechange', check);
    check();
  });
}

async function httpError(res) {
  let body = null;
  let msg = '';
  try {
    const text = await res.text();
    try {
      body = JSON.parse(text);
      msg = typeof body?.error === 'string' ? body.error : '';
    } catch {
      msg = text.trim().slice(0, 300);
    }
  } catch {
    // no body
  }
  return new HTTPError(msg || `${res.status} ${res.statusText}`.trim(), res.status, body?.code, body);
}
