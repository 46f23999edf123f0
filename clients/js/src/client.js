// The shardcast client: one WebSocket to a node, reconnected with the
// contract's backoff, resumed with the newest resume token, with acked
// requests resent after a reconnect and received messages deduplicated.

import {
  CLOSE_CODES,
  CLOSE_NORMAL,
  decode,
  encodeJoin,
  encodeLeave,
  encodePublish,
  encodeRefresh,
  encodeSend,
  isId,
  isPattern,
  isRoom,
  isUserId,
} from './protocol.js';
import { backoffDelay, Dedup } from './util.js';

/** An error with a stable `code` (a node's error code, or `timeout`, `disconnected`, `bad_argument`). */
export class ShardcastError extends Error {
  constructor(code, message, id, retryAfterMs) {
    super(message ? `${code}: ${message}` : code);
    this.name = 'ShardcastError';
    this.code = code;
    if (id !== undefined) this.id = id;
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
  }
}

/** Errors the node sends without the id of the join/leave they refuse. */
const ROOM_OP_ERRORS = new Set(['too_many_subscriptions', 'rate_limited']);

const DEFAULTS = {
  minDelay: 250,
  maxDelay: 15000,
  jitter: 500,
  sendTimeout: 15000,
  connectTimeout: 10000,
  dedupWindow: 4096,
};

/** The `exp` claim (unix seconds) of a JWT, or null when it has none. */
export function jwtExpiry(token) {
  if (typeof token !== 'string') return null;
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
    return Number.isFinite(claims?.exp) ? claims.exp : null;
  } catch {
    return null;
  }
}

function randomPrefix() {
  const bytes = new Uint8Array(6);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class Client {
  /** @param {import('./index.js').ClientOptions} options */
  constructor(options) {
    const o = { ...DEFAULTS, ...options };
    if (!isUserId(o.userId)) throw new TypeError(`invalid userId ${JSON.stringify(o.userId)}`);
    if (!o.url === !o.controlUrl) throw new TypeError('give exactly one of url and controlUrl');
    for (const k of ['minDelay', 'maxDelay', 'jitter', 'sendTimeout', 'connectTimeout', 'dedupWindow']) {
      if (!(Number.isFinite(o[k]) && o[k] >= 0)) throw new TypeError(`invalid ${k}`);
    }
    const WS = o.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== 'function') {
      throw new TypeError('no WebSocket implementation: pass options.WebSocket (in Node.js < 22 install the ws package)');
    }
    this.options = o;
    this.userId = o.userId;
    /** @type {'disconnected'|'connecting'|'connected'} */
    this.state = 'disconnected';
    /** The newest resume token (from `welcome` or `reconnect`). */
    this.resumeToken = o.resumeToken ?? null;
    /** The node of the current or last session (`welcome.node`). */
    this.node = null;
    /** Counters: resent requests, dropped duplicates, offset restarts seen. */
    this.stats = { resent: 0, duplicates: 0, offsetResets: 0, connects: 0 };
    this._WebSocket = WS;
    this._setTimeout = o.setTimeout ?? ((f, ms) => globalThis.setTimeout(f, ms));
    this._clearTimeout = o.clearTimeout ?? ((t) => globalThis.clearTimeout(t));
    this._random = o.random ?? Math.random;
    this._now = o.now ?? (() => Date.now());
    this._fetch = o.fetch ?? ((...a) => globalThis.fetch(...a));
    this._listeners = new Map();
    this._ws = null;
    this._want = false; // connect() called and not disconnect()
    this._attempt = 0; // k of the backoff: attempts since the last welcome
    this._epoch = 0; // bumps on every open and on disconnect(): stale callbacks are ignored
    this._reconnectTimer = null;
    this._connectTimer = null;
    this._retryAfter = null; // from `reconnect`
    this._redirect = null; // `reconnect.wsUrl`, used for the next attempt
    this._nodeId = null; // the node of the last control-plane answer
    this._unreachable = null; // that node, when its connection ended without a `reconnect`
    this._sawReconnect = false; // the current connection got a `reconnect` envelope
    this._resumed = false; // the current socket carried a resume token
    this._authToken = null; // the JWT the current socket was opened (or refreshed) with
    this._refreshTimer = null;
    this._refreshId = null; // id of the refresh waiting for its ack
    /** id -> {id, kind, text, room, resolve, reject, timer} in send order */
    this._pending = new Map();
    /** Patterns joined (or being joined); rejoined after every reconnect. */
    this._rooms = new Set();
    /** Ids of the joins sent by a reconnect -> their pattern. */
    this._rejoins = new Map();
    /**
     * Ids of the joins/leaves sent on the current socket and not yet
     * answered, oldest first. The node answers them in order, and refuses a
     * join/leave (too_many_subscriptions, rate_limited) without its id: such
     * an error belongs to the oldest one.
     */
    this._roomOps = [];
    this._dedup = new Dedup(o.dedupWindow);
    this._prefix = randomPrefix();
    this._seq = 0;
  }

  /** Offset of the last direct message delivered (or the last `welcome.offset`). */
  get offset() {
    return this._dedup.lastOffset;
  }

  /** Patterns this client holds (rejoined after a reconnect). */
  get rooms() {
    return [...this._rooms];
  }

  /** Requests waiting for their ack (sends, publishes, joins, leaves). */
  get pending() {
    return this._pending.size;
  }

  /**
   * Adds a listener; returns a function that removes it.
   * Events: state, connecting, connected, disconnected, error, message, reconnect.
   */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  _emit(event, arg) {
    for (const fn of [...(this._listeners.get(event) ?? [])]) {
      try {
        fn(arg);
      } catch (e) {
        // A throwing listener must not break the client's state.
        this._setTimeout(() => {
          throw e;
        }, 0);
      }
    }
  }

  _setState(state) {
    if (state === this.state) return;
    const oldState = this.state;
    this.state = state;
    this._emit('state', { newState: state, oldState });
  }

  /** Starts connecting (and reconnecting until `disconnect()`). */
  connect() {
    if (this._want) return;
    this._want = true;
    this._attempt = 0;
    this._setState('connecting');
    this._emit('connecting', { code: 0, reason: 'connect called', attempt: 0, delay: 0 });
    this._open();
  }

  /** Closes the socket and stops reconnecting; rejects pending requests with `disconnected`. */
  disconnect(reason = 'disconnect called') {
    if (!this._want && this.state === 'disconnected') return;
    this._want = false;
    this._epoch += 1;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      try {
        ws.close(CLOSE_NORMAL, reason);
      } catch {
        /* already closed */
      }
    }
    this._stop(CLOSE_NORMAL, reason);
  }

  _stop(code, reason) {
    for (const [id, e] of this._pending) {
      if (e.kind === 'join') this._rooms.delete(e.room);
      this._settle(id, new ShardcastError('disconnected', reason, id));
    }
    this._setState('disconnected');
    this._emit('disconnected', { code, reason });
  }

  _clearTimers() {
    if (this._reconnectTimer !== null) this._clearTimeout(this._reconnectTimer);
    if (this._connectTimer !== null) this._clearTimeout(this._connectTimer);
    if (this._refreshTimer !== null) this._clearTimeout(this._refreshTimer);
    this._reconnectTimer = this._connectTimer = this._refreshTimer = null;
    this._refreshId = null;
  }

  /**
   * With `getToken`, the JWT is refreshed on the open connection before it
   * expires (`{"type":"refresh"}`): 30 s before `exp` for a token with more
   * than a minute left, else at 80 % of what is left (never sooner than 1 s).
   * Without a refresh the node closes the connection with 4003 after `exp`.
   */
  _scheduleRefresh(ws) {
    if (this._refreshTimer !== null) this._clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    const exp = jwtExpiry(this._authToken);
    if (!this.options.getToken || exp === null) return;
    const left = exp * 1000 - this._now();
    const delay = Math.max(1000, left > 60_000 ? left - 30_000 : left * 0.8);
    this._refreshTimer = this._setTimeout(() => {
      this._refreshTimer = null;
      this._refresh(ws);
    }, delay);
  }

  async _refresh(ws) {
    let token;
    try {
      token = await this.options.getToken({ userId: this.userId });
    } catch (e) {
      this._emit('error', new ShardcastError('refresh_failed', e?.message ?? String(e)));
      return;
    }
    if (this._ws !== ws || this.state !== 'connected' || !token) return;
    this._refreshId = this._nextId('r');
    this._pendingToken = token;
    this._sendRaw(ws, encodeRefresh(token, this._refreshId));
  }

  /** The URL of the next attempt: `reconnect.wsUrl`, the control plane's `wsUrl` or `url`. */
  async _target() {
    const o = this.options;
    const auth = o.getToken ? await o.getToken({ userId: this.userId }) : o.token;
    let base = o.url;
    let token = auth;
    let resume = this.resumeToken;
    let ring = null; // the ring version that chose `base`, passed on as `ring=`
    if (this._redirect) {
      base = this._redirect;
      this._redirect = null;
      this._nodeId = null;
    } else if (o.controlUrl) {
      const u = new URL('api/v1/connect', o.controlUrl.endsWith('/') ? o.controlUrl : `${o.controlUrl}/`);
      u.searchParams.set('userId', this.userId);
      // The node we lost: the control plane checks it and, if it is gone,
      // answers from the ring without it (a failover in well under the
      // heartbeat grace).
      if (this._unreachable) u.searchParams.set('unreachable', this._unreachable);
      const res = await this._fetch(u.toString(), {
        headers: auth ? { authorization: `Bearer ${auth}` } : {},
      });
      if (!res.ok) throw new Error(`control plane answered ${res.status}`);
      const body = await res.json();
      if (typeof body?.wsUrl !== 'string') throw new Error('control plane: no wsUrl');
      base = body.wsUrl;
      ring = Number.isInteger(body.ringVersion) ? body.ringVersion : null;
      this._nodeId = typeof body.nodeId === 'string' ? body.nodeId : null;
      this._unreachable = null;
      if (typeof body.token === 'string') token = body.token;
      if (!resume && typeof body.resumeToken === 'string') resume = body.resumeToken;
    }
    const u = new URL(base);
    u.searchParams.set('userId', this.userId);
    if (resume) u.searchParams.set('resume', resume);
    if (token) u.searchParams.set('token', token);
    if (ring !== null) u.searchParams.set('ring', String(ring));
    this._authToken = token ?? null;
    return { url: u.toString(), resumed: Boolean(resume) };
  }

  async _open() {
    const epoch = ++this._epoch;
    let target;
    try {
      target = await this._target();
    } catch (e) {
      if (epoch !== this._epoch) return;
      this._emit('error', new ShardcastError('connect_failed', e?.message ?? String(e)));
      this._retry(0, `connect failed: ${e?.message ?? e}`);
      return;
    }
    if (epoch !== this._epoch) return;
    let ws;
    try {
      ws = new this._WebSocket(target.url);
    } catch (e) {
      this._emit('error', new ShardcastError('connect_failed', e?.message ?? String(e)));
      this._retry(0, 'connect failed');
      return;
    }
    this.stats.connects += 1;
    this._ws = ws;
    this._sawReconnect = false;
    this._resumed = target.resumed;
    ws.onmessage = (ev) => this._onFrame(ws, ev.data);
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason);
    ws.onerror = () => {}; // a close event follows
    this._connectTimer = this._setTimeout(() => {
      this._connectTimer = null;
      if (this._ws === ws && this.state !== 'connected') this._drop(ws, 'no welcome in time');
    }, this.options.connectTimeout);
  }

  /** Abandons `ws` (no close frame awaited) and reconnects. */
  _drop(ws, reason) {
    if (this._ws !== ws) return;
    this._ws = null;
    try {
      ws.close(CLOSE_NORMAL, reason);
    } catch {
      /* ignore */
    }
    this._retry(1006, reason);
  }

  _retry(code, reason) {
    this._clearTimers();
    if (!this._want) return;
    const o = this.options;
    let delay;
    if (this._retryAfter !== null) {
      delay = backoffDelay(0, { minDelay: this._retryAfter, maxDelay: o.maxDelay, jitter: o.jitter }, this._random);
      this._retryAfter = null;
    } else {
      delay = backoffDelay(this._attempt, o, this._random);
    }
    this._attempt += 1;
    this._setState('connecting');
    this._emit('connecting', { code, reason, attempt: this._attempt, delay });
    this._reconnectTimer = this._setTimeout(() => {
      this._reconnectTimer = null;
      this._open();
    }, delay);
  }

  _onClose(ws, code, reason) {
    if (this._ws !== ws) return;
    this._ws = null;
    if (!this._sawReconnect && this._nodeId) this._unreachable = this._nodeId;
    if (code === CLOSE_CODES.REPLACED) {
      // Another connection of the same user took over: reconnecting would
      // take it back, and the two would replace each other forever.
      this._want = false;
      this._clearTimers();
      this._stop(code, reason);
      return;
    }
    this._retry(code, reason);
  }

  _onFrame(ws, data) {
    if (this._ws !== ws) return;
    const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
    let env;
    try {
      env = decode(text);
    } catch (e) {
      this._emit('error', new ShardcastError('protocol', e.message));
      return;
    }
    switch (env.type) {
      case 'welcome':
        return this._onWelcome(ws, env);
      case 'msg':
        return this._onMsg(env);
      case 'ack':
        if (env.id === this._refreshId) {
          this._refreshId = null;
          this._authToken = this._pendingToken;
          return this._scheduleRefresh(ws);
        }
        this._rejoins.delete(env.id);
        this._roomOps = this._roomOps.filter((id) => id !== env.id);
        return this._settle(env.id, null);
      case 'error':
        return this._onError(env);
      case 'reconnect':
        this._sawReconnect = true;
        this.resumeToken = env.resumeToken;
        if (env.retryAfterMs !== undefined) this._retryAfter = env.retryAfterMs;
        if (env.wsUrl) this._redirect = env.wsUrl;
        this._emit('reconnect', { retryAfterMs: env.retryAfterMs, wsUrl: env.wsUrl });
        return undefined;
      default:
        return undefined; // a newer node's envelope
    }
  }

  _onWelcome(ws, w) {
    if (this._connectTimer !== null) this._clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this.resumeToken = w.resumeToken;
    this.node = w.node ?? null;
    this._attempt = 0;
    this._dedup.welcome(w.offset);
    this._rejoins.clear();
    this._roomOps = [];
    this._setState('connected');
    this._scheduleRefresh(ws);
    // Rooms first (so the resent publishes and what follows are seen), then
    // every unacked request in its original order, with its original id.
    const pendingJoins = new Set();
    for (const e of this._pending.values()) if (e.kind === 'join') pendingJoins.add(e.room);
    for (const room of this._rooms) {
      if (pendingJoins.has(room)) continue;
      const id = this._nextId('j');
      this._rejoins.set(id, room);
      this._roomOps.push(id);
      this._sendRaw(ws, encodeJoin(room, id));
    }
    for (const [id, e] of this._pending) {
      if (e.kind === 'leave') {
        this._settle(id, null); // a new connection holds nothing to leave
        continue;
      }
      if (e.sent) this.stats.resent += 1;
      e.sent = true;
      if (e.kind === 'join') this._roomOps.push(id);
      this._sendRaw(ws, e.text);
    }
    this._emit('connected', { userId: w.userId, node: this.node, offset: w.offset, resumed: this._resumed });
  }

  _onMsg(m) {
    if (m.kind === 'direct') {
      const resets = this._dedup.resets;
      const fresh = this._dedup.acceptDirect(m.from, m.id, m.offset);
      if (this._dedup.resets !== resets) this.stats.offsetResets += 1;
      if (!fresh) {
        this.stats.duplicates += 1;
        return;
      }
      this._emit('message', { type: 'direct', from: m.from, id: m.id, offset: m.offset, data: m.data });
    } else {
      if (!this._dedup.acceptRoom(m.room, m.from, m.id)) {
        this.stats.duplicates += 1;
        return;
      }
      this._emit('message', { type: 'room', room: m.room, from: m.from, id: m.id, data: m.data });
    }
  }

  _onError(env) {
    if (env.id !== undefined && env.id === this._refreshId) {
      // The node keeps the connection until the old token's exp, then
      // closes it with 4003; the reconnect asks getToken again.
      this._refreshId = null;
      this._emit('error', new ShardcastError(env.code, env.message, env.id));
      return;
    }
    if (env.id === undefined && ROOM_OP_ERRORS.has(env.code) && this._roomOps.length > 0) {
      env = { ...env, id: this._roomOps.shift() };
    } else if (env.id !== undefined) {
      this._roomOps = this._roomOps.filter((id) => id !== env.id);
    }
    const err = new ShardcastError(env.code, env.message, env.id, env.retryAfterMs);
    if (env.code.startsWith('token_')) {
      // The token was refused (close 1008 follows): the next attempt goes
      // without one, and the node replays after its own mark.
      this.resumeToken = null;
    }
    const e = env.id !== undefined ? this._pending.get(env.id) : undefined;
    if (e) {
      if (e.kind === 'join') this._rooms.delete(e.room);
      this._settle(env.id, err);
      return;
    }
    const rejoined = env.id !== undefined ? this._rejoins.get(env.id) : undefined;
    if (rejoined !== undefined) {
      // A rejoin after a reconnect was refused: the room is no longer held.
      this._rejoins.delete(env.id);
      this._rooms.delete(rejoined);
    }
    this._emit('error', err);
  }

  _settle(id, err) {
    const e = this._pending.get(id);
    if (!e) return;
    this._pending.delete(id);
    this._clearTimeout(e.timer);
    if (err) e.reject(err);
    else e.resolve({ id, node: this.node });
  }

  _sendRaw(ws, text) {
    try {
      ws.send(text);
    } catch {
      // The socket is closing: the request stays pending and is resent.
    }
  }

  _nextId(kind) {
    this._seq += 1;
    return `${this._prefix}-${kind}${this._seq.toString(36)}`;
  }

  _request(kind, id, text, timeout, room) {
    return new Promise((resolve, reject) => {
      if (this._pending.has(id)) {
        reject(new ShardcastError('bad_argument', `id ${id} is already pending`, id));
        return;
      }
      const e = { id, kind, text, room, resolve, reject, sent: false, timer: null };
      e.timer = this._setTimeout(() => {
        if (this._pending.get(id) !== e) return;
        this._pending.delete(id);
        if (kind === 'join') this._rooms.delete(room);
        reject(new ShardcastError('timeout', `no ack within ${timeout} ms`, id));
      }, timeout);
      this._pending.set(id, e);
      if (this.state === 'connected' && this._ws) {
        e.sent = true;
        if (kind === 'join' || kind === 'leave') this._roomOps.push(id);
        this._sendRaw(this._ws, text);
      }
    });
  }

  _checkId(opts) {
    const id = opts?.id ?? this._nextId('m');
    if (!isId(id)) throw new ShardcastError('bad_argument', 'id must be 1-128 bytes');
    return id;
  }

  /**
   * Sends `data` to user `to`. Resolves with `{id, node}` on the node's ack
   * (the message is buffered for `to`); rejects with a ShardcastError whose
   * `code` is the node's error code, `timeout` or `disconnected`. Queued
   * while not connected; resent with the same id after a reconnect.
   */
  send(to, data, opts = {}) {
    if (!isUserId(to)) return Promise.reject(new ShardcastError('bad_argument', `invalid user ${JSON.stringify(to)}`));
    let id;
    try {
      id = this._checkId(opts);
    } catch (e) {
      return Promise.reject(e);
    }
    return this._request('send', id, encodeSend(to, id, data), opts.timeout ?? this.options.sendTimeout);
  }

  /** Publishes `data` to room `room`; same promise and resend rules as `send`. */
  publish(room, data, opts = {}) {
    if (!isRoom(room)) return Promise.reject(new ShardcastError('bad_argument', `invalid room ${JSON.stringify(room)}`));
    let id;
    try {
      id = this._checkId(opts);
    } catch (e) {
      return Promise.reject(e);
    }
    return this._request('publish', id, encodePublish(room, id, data), opts.timeout ?? this.options.sendTimeout);
  }

  /** Subscribes to a room or pattern (`chat.*`); kept and rejoined after every reconnect. */
  join(pattern, opts = {}) {
    if (!isPattern(pattern)) return Promise.reject(new ShardcastError('bad_argument', `invalid pattern ${JSON.stringify(pattern)}`));
    for (const e of this._pending.values()) {
      if (e.kind === 'join' && e.room === pattern) return new Promise((res, rej) => {
        const { resolve, reject } = e;
        e.resolve = (v) => { resolve(v); res(v); };
        e.reject = (err) => { reject(err); rej(err); };
      });
    }
    if (this._rooms.has(pattern)) return Promise.resolve({ id: null, node: this.node });
    this._rooms.add(pattern);
    const id = this._nextId('j');
    return this._request('join', id, encodeJoin(pattern, id), opts.timeout ?? this.options.sendTimeout, pattern);
  }

  /** Drops the subscription `pattern` (exactly as joined). */
  leave(pattern, opts = {}) {
    if (!isPattern(pattern)) return Promise.reject(new ShardcastError('bad_argument', `invalid pattern ${JSON.stringify(pattern)}`));
    for (const [id, e] of this._pending) {
      if (e.kind === 'join' && e.room === pattern) this._settle(id, new ShardcastError('disconnected', 'left before joined', id));
    }
    const held = this._rooms.delete(pattern);
    if (!held || this.state !== 'connected') return Promise.resolve({ id: null, node: this.node });
    const id = this._nextId('l');
    return this._request('leave', id, encodeLeave(pattern, id), opts.timeout ?? this.options.sendTimeout, pattern);
  }
}
