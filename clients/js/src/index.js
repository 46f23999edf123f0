// shardcast-client: the reference client for protocol v1 (browsers and any
// runtime with a standard WebSocket). Node.js resolves to ./node.js instead.
export { Client, jwtExpiry, ShardcastError } from './client.js';
export {
  CLIENT_ERROR_CODES,
  CLOSE_CODES,
  CLOSE_NORMAL,
  ERROR_CODES,
  MAX_ID_BYTES,
  ProtocolError,
  decode,
  encodeJoin,
  encodeLeave,
  encodeRefresh,
  encodePublish,
  encodeSend,
  isId,
  isPattern,
  isRoom,
  isUserId,
  parseResumeToken,
} from './protocol.js';
export { backoffDelay, Dedup, Window } from './util.js';
