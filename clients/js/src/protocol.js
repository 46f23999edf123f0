// Protocol v1 of a shardcast node (docs/protocol.md): envelope encoders, the
// decoder for server envelopes, and the stable error and close codes.

/** Error codes a node puts in `error` envelopes (docs/protocol.md, "Error codes"). */
export const ERROR_CODES = Object.freeze([
  'bad_json',
  'bad_envelope',
  'unknown_type',
  'bad_user',
  'bad_room',
  'rate_limited',
  'too_many_subscriptions',
  'binary_not_supported',
  'unavailable',
  'token_malformed',
  'token_forged',
  'token_expired',
  'token_wrong_user',
  'forbidden',
  'refresh_refused',
]);

/** Codes the SDK itself uses when it rejects a promise (never sent by a node). */
export const CLIENT_ERROR_CODES = Object.freeze(['timeout', 'disconnected', 'bad_argument', 'connect_failed', 'refresh_failed', 'protocol']);

/** Close codes a node sends (docs/protocol.md, "Close codes"). */
export const CLOSE_CODES = Object.freeze({
  IDLE_TIMEOUT: 1001,
  PROTOCOL_ERROR: 1002,
  INVALID_UTF8: 1007,
  TOKEN_REFUSED: 1008,
  TOO_BIG: 1009,
  STORE_FAILED: 1011,
  DRAINING: 1012,
  REPLACED: 4001,
  TOKEN_EXPIRED: 4003,
});

/** Close code the client uses for an explicit `disconnect()`. */
export const CLOSE_NORMAL = 1000;

/** Maximum length of an envelope id in bytes. */
export const MAX_ID_BYTES = 128;

const USER_RE = /^[A-Za-z0-9\-_.@:+=]{1,128}$/;
const SEGMENT = '[A-Za-z0-9\\-_:]+';
const ROOM_RE = new RegExp(`^${SEGMENT}(\\.${SEGMENT})*$`);
const PATTERN_RE = new RegExp(`^(${SEGMENT}|\\*)(\\.(${SEGMENT}|\\*))*$`);

/** Whether `s` is a valid user id (1–128 bytes of `A-Za-z0-9-_.@:+=`). */
export function isUserId(s) {
  return typeof s === 'string' && USER_RE.test(s);
}

/** Whether `s` is a valid room name (publish). */
export function isRoom(s) {
  return typeof s === 'string' && s.length <= 128 && ROOM_RE.test(s);
}

/** Whether `s` is a valid room pattern (join/leave): whole segments may be `*`. */
export function isPattern(s) {
  return typeof s === 'string' && s.length <= 128 && PATTERN_RE.test(s);
}

/** Whether `s` is a valid envelope id (1–128 bytes of UTF-8). */
export function isId(s) {
  return typeof s === 'string' && s.length > 0 && utf8Length(s) <= MAX_ID_BYTES;
}

function utf8Length(s) {
  let n = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
}

const json = (v) => JSON.stringify(v === undefined ? null : v);

/** `{"type":"send","to":…,"id":…,"data":…}` */
export function encodeSend(to, id, data) {
  return `{"type":"send","to":${json(to)},"id":${json(id)},"data":${json(data)}}`;
}

/** `{"type":"publish","room":…,"id":…,"data":…}` */
export function encodePublish(room, id, data) {
  return `{"type":"publish","room":${json(room)},"id":${json(id)},"data":${json(data)}}`;
}

/** `{"type":"join","room":…[,"id":…]}` */
export function encodeJoin(room, id) {
  return id === undefined
    ? `{"type":"join","room":${json(room)}}`
    : `{"type":"join","room":${json(room)},"id":${json(id)}}`;
}

/** `{"type":"refresh","token":…[,"id":…]}`: a new JWT before the current one expires. */
export function encodeRefresh(token, id) {
  return id === undefined
    ? `{"type":"refresh","token":${json(token)}}`
    : `{"type":"refresh","token":${json(token)},"id":${json(id)}}`;
}

/** `{"type":"leave","room":…[,"id":…]}` */
export function encodeLeave(room, id) {
  return id === undefined
    ? `{"type":"leave","room":${json(room)}}`
    : `{"type":"leave","room":${json(room)},"id":${json(id)}}`;
}

/** A server envelope that does not follow protocol v1. */
export class ProtocolError extends Error {
  /** @param {'bad_json'|'bad_envelope'|'unknown_type'} code */
  constructor(code, message, text) {
    super(`${code}: ${message}`);
    this.name = 'ProtocolError';
    this.code = code;
    this.text = text;
  }
}

const str = (v) => typeof v === 'string';
const uint = (v) => Number.isSafeInteger(v) && v >= 0;

/**
 * Parses one server→client frame. Returns a normalised envelope
 * (`welcome`, `msg` with `kind` `direct` or `room`, `ack`, `error`,
 * `reconnect`) or, for a `type` this SDK does not know, `{type, unknown: true}`
 * (newer nodes may add envelopes). Throws ProtocolError on anything else.
 * With `{strict: true}` unknown types and error codes are refused too.
 */
export function decode(text, { strict = false } = {}) {
  let v;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ProtocolError('bad_json', 'not JSON', text);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new ProtocolError('bad_json', 'not a JSON object', text);
  }
  const bad = (field) => {
    throw new ProtocolError('bad_envelope', `${v.type}: bad or missing ${field}`, text);
  };
  switch (v.type) {
    case 'welcome':
      if (!str(v.userId)) bad('userId');
      if (!str(v.resumeToken)) bad('resumeToken');
      if (!uint(v.offset)) bad('offset');
      return {
        type: 'welcome',
        userId: v.userId,
        node: str(v.node) ? v.node : undefined,
        resumeToken: v.resumeToken,
        offset: v.offset,
      };
    case 'msg': {
      if (!str(v.from)) bad('from');
      if (!str(v.id)) bad('id');
      const data = v.data === undefined ? null : v.data;
      if (v.room !== undefined) {
        if (!str(v.room)) bad('room');
        // A room message carries no offset (docs/protocol.md).
        if (strict && v.offset !== undefined) bad('offset');
        return { type: 'msg', kind: 'room', room: v.room, from: v.from, id: v.id, data };
      }
      if (!uint(v.offset) || v.offset === 0) bad('offset');
      return { type: 'msg', kind: 'direct', from: v.from, id: v.id, offset: v.offset, data };
    }
    case 'ack':
      if (!str(v.id)) bad('id');
      return { type: 'ack', id: v.id };
    case 'error':
      if (!str(v.code) || (strict && !ERROR_CODES.includes(v.code))) bad('code');
      if (v.retryAfterMs !== undefined && !uint(v.retryAfterMs)) bad('retryAfterMs');
      return {
        type: 'error',
        code: v.code,
        id: str(v.id) ? v.id : undefined,
        message: str(v.message) ? v.message : '',
        retryAfterMs: v.retryAfterMs,
      };
    case 'reconnect':
      if (!str(v.resumeToken)) bad('resumeToken');
      if (v.retryAfterMs !== undefined && !uint(v.retryAfterMs)) bad('retryAfterMs');
      if (v.wsUrl !== undefined && !str(v.wsUrl)) bad('wsUrl');
      return {
        type: 'reconnect',
        resumeToken: v.resumeToken,
        retryAfterMs: v.retryAfterMs,
        wsUrl: v.wsUrl,
      };
    default:
      if (!str(v.type)) throw new ProtocolError('bad_envelope', 'type missing or not a string', text);
      if (strict) throw new ProtocolError('unknown_type', `unknown type ${v.type}`, text);
      return { type: v.type, unknown: true };
  }
}

/**
 * Reads the fields of a resume token (`base64url(userId:offset:issuedAt:mac)`)
 * without checking its MAC (only the node holds the secret). Returns null
 * when the token is not of that shape.
 * @returns {{userId: string, offset: number, issuedAt: number} | null}
 */
export function parseResumeToken(token) {
  if (typeof token !== 'string' || !/^[A-Za-z0-9_-]+$/.test(token)) return null;
  let bin;
  try {
    bin = atob(token.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (token.length % 4)) % 4));
  } catch {
    return null;
  }
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  if (bytes.length < 34 || bytes[bytes.length - 33] !== 0x3a) return null;
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, bytes.length - 33));
  } catch {
    return null;
  }
  const m = /^(.+):(\d+):(\d+)$/.exec(text);
  if (!m || !isUserId(m[1])) return null;
  const offset = Number(m[2]);
  const issuedAt = Number(m[3]);
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(issuedAt)) return null;
  return { userId: m[1], offset, issuedAt };
}
