// Types of shardcast-client (hand-written; the source is JavaScript).

export type State = 'disconnected' | 'connecting' | 'connected';

export interface ClientOptions {
  /** The node's WebSocket endpoint, e.g. `ws://host:8080/ws`. Exactly one of `url` and `controlUrl`. */
  url?: string;
  /** The control plane: `GET {controlUrl}/api/v1/connect?userId=X` → `{wsUrl, resumeToken?, token, expiresAt}` before each connect. */
  controlUrl?: string;
  userId: string;
  /** A static auth token, passed as `token=` (and as `Authorization: Bearer` to the control plane). */
  token?: string;
  /** Called before each connect; its result is used as the auth token. */
  /**
   * Called before every connect for the JWT (`token=`), and again before the
   * open connection's JWT expires (sent as a `refresh`; the node closes an
   * unrefreshed connection with 4003 after `exp`).
   */
  getToken?: (ctx: { userId: string }) => string | undefined | Promise<string | undefined>;
  /** The clock, unix milliseconds (tests). */
  now?: () => number;
  /** A resume token stored from an earlier session (e.g. in sessionStorage). */
  resumeToken?: string;
  /** Backoff `t_k = min(maxDelay, minDelay·2^k) + U(0, jitter)`, in ms. Defaults 250, 15000, 500. */
  minDelay?: number;
  maxDelay?: number;
  jitter?: number;
  /** Reject `send`/`publish`/`join`/`leave` without an ack after this many ms (15000). */
  sendTimeout?: number;
  /** Give up on a socket that sends no `welcome` within this many ms (10000). */
  connectTimeout?: number;
  /** Received ids remembered for deduplication (4096; keep it ≥ the node's --buffer-messages). */
  dedupWindow?: number;
  /** The WebSocket constructor (default: the global one; in Node.js the `ws` package when there is none). */
  WebSocket?: unknown;
  /** Injection points for tests. */
  fetch?: typeof fetch;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  random?: () => number;
}

export interface Ack {
  id: string | null;
  /** `welcome.node` of the connection the ack came on. */
  node: string | null;
}

export interface DirectMessage {
  type: 'direct';
  from: string;
  id: string;
  offset: number;
  data: unknown;
}

export interface RoomMessage {
  type: 'room';
  room: string;
  from: string;
  id: string;
  data: unknown;
}

export type Message = DirectMessage | RoomMessage;

export interface ClientEvents {
  state: { newState: State; oldState: State };
  /** Entering (or staying in) `connecting`: why (`code`, `reason` of the close, 0 for `connect()`), the attempt and its delay. */
  connecting: { code: number; reason: string; attempt: number; delay: number };
  connected: { userId: string; node: string | null; offset: number; resumed: boolean };
  /** Terminal: `disconnect()` (1000) or replaced by a newer connection (4001). */
  disconnected: { code: number; reason: string };
  error: ShardcastError;
  message: Message;
  /** The node is draining and asked for a reconnect. */
  reconnect: { retryAfterMs?: number; wsUrl?: string };
}

export interface RequestOptions {
  /** Your own id (1–128 bytes); default: a unique one. */
  id?: string;
  timeout?: number;
}

export class Client {
  constructor(options: ClientOptions);
  readonly userId: string;
  readonly state: State;
  /** The newest resume token (from `welcome` or `reconnect`). */
  readonly resumeToken: string | null;
  readonly node: string | null;
  /** Offset of the last direct message delivered (or the last `welcome.offset`). */
  readonly offset: number;
  readonly rooms: string[];
  readonly pending: number;
  readonly stats: { resent: number; duplicates: number; offsetResets: number; connects: number };
  on<E extends keyof ClientEvents>(event: E, fn: (arg: ClientEvents[E]) => void): () => void;
  off<E extends keyof ClientEvents>(event: E, fn: (arg: ClientEvents[E]) => void): void;
  connect(): void;
  disconnect(reason?: string): void;
  send(to: string, data?: unknown, opts?: RequestOptions): Promise<Ack>;
  publish(room: string, data?: unknown, opts?: RequestOptions): Promise<Ack>;
  join(pattern: string, opts?: { timeout?: number }): Promise<Ack>;
  leave(pattern: string, opts?: { timeout?: number }): Promise<Ack>;
}

export class ShardcastError extends Error {
  /** A node error code (ERROR_CODES), or `timeout`, `disconnected`, `bad_argument`, `connect_failed`, `refresh_failed`, `protocol`. */
  readonly code: string;
  readonly id?: string;
  /** `rate_limited`: milliseconds until the user's limit of that kind allows one more. */
  readonly retryAfterMs?: number;
}

export class ProtocolError extends Error {
  readonly code: 'bad_json' | 'bad_envelope' | 'unknown_type';
  readonly text: string;
}

export const ERROR_CODES: readonly string[];
export const CLIENT_ERROR_CODES: readonly string[];
export const CLOSE_CODES: Readonly<{
  IDLE_TIMEOUT: 1001;
  PROTOCOL_ERROR: 1002;
  INVALID_UTF8: 1007;
  TOKEN_REFUSED: 1008;
  TOO_BIG: 1009;
  STORE_FAILED: 1011;
  DRAINING: 1012;
  REPLACED: 4001;
  TOKEN_EXPIRED: 4003;
}>;
export const CLOSE_NORMAL: 1000;
export const MAX_ID_BYTES: 128;

export type ServerEnvelope =
  | { type: 'welcome'; userId: string; node?: string; resumeToken: string; offset: number }
  | { type: 'msg'; kind: 'direct'; from: string; id: string; offset: number; data: unknown }
  | { type: 'msg'; kind: 'room'; room: string; from: string; id: string; data: unknown }
  | { type: 'ack'; id: string }
  | { type: 'error'; code: string; id?: string; message: string; retryAfterMs?: number }
  | { type: 'reconnect'; resumeToken: string; retryAfterMs?: number; wsUrl?: string }
  | { type: string; unknown: true };

export function decode(text: string, opts?: { strict?: boolean }): ServerEnvelope;
export function encodeSend(to: string, id: string, data?: unknown): string;
export function encodePublish(room: string, id: string, data?: unknown): string;
export function encodeJoin(room: string, id?: string): string;
export function encodeLeave(room: string, id?: string): string;
export function encodeRefresh(token: string, id?: string): string;
export function isUserId(s: unknown): boolean;
export function isRoom(s: unknown): boolean;
export function isPattern(s: unknown): boolean;
export function isId(s: unknown): boolean;
export function parseResumeToken(token: string): { userId: string; offset: number; issuedAt: number } | null;
export function backoffDelay(k: number, o: { minDelay: number; maxDelay: number; jitter: number }, random?: () => number): number;

export class Window {
  constructor(capacity: number);
  has(key: string): boolean;
  add(key: string): void;
  readonly size: number;
}

export class Dedup {
  constructor(windowSize: number);
  lastOffset: number;
  resets: number;
  welcome(offset: number): void;
  acceptDirect(from: string, id: string, offset: number): boolean;
  acceptRoom(room: string, from: string, id: string): boolean;
}

/** Node.js entry only: the WebSocket constructor used by default. */
export const DefaultWebSocket: unknown;

/** The `exp` claim (unix seconds) of a JWT, or null when it has none. */
export function jwtExpiry(token: string | null | undefined): number | null;
