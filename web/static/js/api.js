// The gateway's HTTP API as every page uses it: the access token (sent as
// a bearer header; taken out of the address bar when a link carries it),
// requests that must not be answered from the cache, and error answers
// (JSON {"code": "...", "error": "message"}) thrown as APIError.

/** An error answer from the gateway. */
export class APIError extends Error {
  constructor(message, status, code, body) {
    super(message);
    this.name = 'APIError';
    this.status = status; // HTTP status
    this.code = code; // the server's error code, e.g. "stream_not_found"
    this.body = body; // the parsed JSON body, if any
  }
}

/** The request headers that carry token, if any. */
export function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * api fetches url with token (if any) as a bearer token, never from the
 * browser's cache. opts are fetch's; opts.headers are added.
 */
export function api(url, token = '', opts = {}) {
  return fetch(url, { cache: 'no-store', ...opts, headers: { ...authHeaders(token), ...opts.headers } });
}

/** apiError reads an error answer: the server's message and code, else its text. */
export async function apiError(res) {
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
  return new APIError(msg || `${res.status} ${res.statusText}`.trim(), res.status, body?.code, body);
}

/** getJSON is the JSON answer of a GET of url; an error answer is thrown as APIError. */
export async function getJSON(url, token = '') {
  const res = await api(url, token);
  if (!res.ok) throw await apiError(res);
  return res.json();
}

/**
 * What a token allows: {open: true} when the gateway needs no token from
 * this browser, else the token's room, identity, name and grants.
 */
export function whoami(token) {
  return getJSON('/api/v1/me', token);
}

/**
 * takeTokenFromURL returns the token in the query parameter name and
 * removes it from the address bar and history, so that it does not leak
 * through bookmarks or screen shares.
 */
export function takeTokenFromURL(name = 'token') {
  const q = new URLSearchParams(location.search);
  const token = q.get(name) || '';
  if (q.has(name)) {
    q.delete(name);
    const rest = q.toString();
    history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : '') + location.hash);
  }
  return token;
}
