// A room as the pages see it: its hosts and their streams, viewer counts
// and chat, kept up to date from the gateway's room event stream
// (Server-Sent Events at /api/v1/rooms/ROOM/events).
//
//   const room = new Room('demo', { token });
//   room.addEventListener('change', () => render(room.hosts));
//   room.addEventListener('chat', (e) => show(e.detail));
//   room.connect();
//
// The first event is a snapshot of the room (hosts, streams, the last chat
// messages); later events change it. After a reconnect the next snapshot
// replaces everything, so nothing is counted twice.

import { api, apiError } from './api.js';

export const SEGMENT = /^[A-Za-z0-9_-]{1,64}$/;
export const SCREEN_SUFFIX = '-screen';
export const MAX_CHAT_BYTES = 2048;

/** The room name from /PREFIX/ROOM or ?room=. */
export function roomFromURL(prefix) {
  const m = location.pathname.match(new RegExp(`^/${prefix}/([^/]+)/?$`));
  const room = m ? decodeURIComponent(m[1]) : new URLSearchParams(location.search).get('room') || '';
  return room;
}

export function utf8Length(s) {
  return new TextEncoder().encode(s).length;
}

/**
 * Room is the live state of one room. Events: 'change' (detail: {type,
 * data}) after any change, 'chat' (detail: message) for each new message,
 * 'status' when the connection's status changes.
 */
export class Room extends EventTarget {
  constructor(name, { token = '' } = {}) {
    super();
    this.name = name;
    this.token = token;
    this.hosts = new Map(); // identity -> {identity, name, joinedAt, streams: Map(name -> stream)}
    this.chat = []; // oldest first
    this.viewers = 0;
    // Paths of streams that went away since the snapshot -> why: "ended"
    // (the server ended it and its sessions) or "left" (hung up).
    this.gone = new Map();
    this.status = 'idle'; // idle, connecting, open, reconnecting, error, closed
    this.error = '';
    this.lastEventId = 0;
    this._es = null;
    this._retry = null;
  }

  /** Opens the event stream; it reconnects by itself. */
  connect() {
    this.close();
    this._setStatus('connecting');
    const q = this.token ? `?access_token=${encodeURIComponent(this.token)}` : '';
    const es = new EventSource(`/api/v1/rooms/${encodeURIComponent(this.name)}/events${q}`);
    this._es = es;
    const on = (type, f) =>
      es.addEventListener(type, (e) => {
        if (this._es !== es) return;
        let data;
        try {
          data = JSON.parse(e.data);
        } catch {
          return;
        }
        this.lastEventId = Number(e.lastEventId) || this.lastEventId;
        f(data);
        this.dispatchEvent(new CustomEvent('change', { detail: { type, data } }));
      });
    on('snapshot', (d) => {
      this._setStatus('open');
      this.hosts = new Map();
      this.gone.clear();
      for (const h of d.hosts || []) this._putHost(h);
      this.chat = d.chat || [];
      this.viewers = d.viewers || 0;
    });
    on('host_joined', (d) => this._putHost({ identity: d.identity, name: d.name, streams: [] }));
    on('host_left', (d) => this.hosts.delete(d.identity));
    on('stream_up', (d) => this._putStream(d.identity, d.stream));
    on('stream_reconnecting', (d) => this._putStream(d.identity, d.stream));
    on('stream_down', (d) => {
      this.hosts.get(d.identity)?.streams.delete(d.stream.name);
      if (this.gone.size >= 1000) this.gone.clear(); // bounded; only the latest matter
      this.gone.set(d.stream.path, d.reason || '');
    });
    on('viewers', (d) => {
      this.viewers = d.viewers;
      for (const h of this.hosts.values()) {
        for (const s of h.streams.values()) s.viewers = d.streams?.[s.name] ?? s.viewers;
      }
    });
    on('chat', (m) => {
      this.chat.push(m);
      if (this.chat.length > 200) this.chat.splice(0, this.chat.length - 200);
      this.dispatchEvent(new CustomEvent('chat', { detail: m }));
    });
    es.addEventListener('token_expired', () => {
      if (this._es !== es) return;
      this.close();
      this._setStatus('error', 'Your access token expired: get a new one and join again.');
    });
    es.addEventListener('error', () => {
      if (this._es !== es) return;
      if (es.readyState === EventSource.CONNECTING) {
        this._setStatus('reconnecting', 'Connection to the room lost, reconnecting…');
        return;
      }
      // Refused (not 200): ask the API why, then retry unless it is final.
      es.close();
      this._explainFailure();
    });
  }

  async _explainFailure() {
    let err = null;
    try {
      const res = await api(`/api/v1/rooms/${encodeURIComponent(this.name)}`, this.token);
      if (!res.ok) err = await apiError(res);
    } catch (e) {
      err = new Error(`cannot reach the server (${e.message})`);
    }
    if (this._es?.readyState !== EventSource.CLOSED) return; // connect() or close() since
    const final = err && (err.status === 401 || err.status === 403 || err.status === 400);
    this._setStatus('error', err ? err.message : 'The room event stream was refused.');
    if (!final) this._retry = setTimeout(() => this.connect(), 3000);
  }

  _putHost(h) {
    const old = this.hosts.get(h.identity);
    const host = {
      identity: h.identity,
      name: h.name || h.identity,
      joinedAt: h.joinedAt,
      streams: old?.streams || new Map(),
    };
    for (const s of h.streams || []) host.streams.set(s.name, { ...s });
    this.hosts.set(h.identity, host);
  }

  _putStream(identity, s) {
    this.gone.delete(s.path);
    if (!this.hosts.has(identity)) this._putHost({ identity, streams: [] });
    this.hosts.get(identity).streams.set(s.name, { ...s });
  }

  _setStatus(status, error = '') {
    this.status = status;
    this.error = error;
    this.dispatchEvent(new CustomEvent('status', { detail: { status, error } }));
  }

  /** Whether the stream at path went away because the server ended it. */
  ended(path) {
    return this.gone.get(path) === 'ended';
  }

  /** Every stream of the room: [{identity, hostName, ...stream}]. */
  streams() {
    const out = [];
    for (const h of this.hosts.values()) {
      for (const s of h.streams.values()) out.push({ ...s, identity: h.identity, hostName: h.name });
    }
    return out;
  }

  /** What the page knows of the room, as plain data (for tests and the console). */
  snapshot() {
    return {
      name: this.name,
      status: this.status,
      error: this.error,
      viewers: this.viewers,
      hosts: [...this.hosts.values()].map((h) => ({ identity: h.identity, name: h.name, streams: [...h.streams.values()] })),
      chat: this.chat,
    };
  }

  /**
   * Sends a chat message. On an open gateway (no token) identity and name
   * say who is talking (shown as unverified). Throws APIError.
   */
  async sendChat(text, { identity, name } = {}) {
    const body = { text };
    if (!this.token) {
      if (identity) body.identity = identity;
      if (name) body.name = name;
    }
    const res = await api(`/api/v1/rooms/${encodeURIComponent(this.name)}/chat`, this.token, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) {
      const err = await apiError(res);
      if (res.status === 429) {
        const after = Number(res.headers.get('Retry-After'));
        if (after > 0) err.message = `You are sending messages too fast; wait ${after} s.`;
      }
      throw err;
    }
    return res.json();
  }

  close() {
    clearTimeout(this._retry);
    this._retry = null;
    this._es?.close();
    this._es = null;
    if (this.status !== 'idle' && this.status !== 'error') this._setStatus('closed');
  }
}
