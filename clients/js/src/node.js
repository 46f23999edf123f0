// Node.js entry: the global WebSocket when the runtime has one (Node.js 22+,
// or 20 with --experimental-websocket), else the optional peer `ws`.
import { Client as BaseClient } from './client.js';

export * from './index.js';

let NodeWebSocket = globalThis.WebSocket;
if (typeof NodeWebSocket !== 'function') {
  try {
    NodeWebSocket = (await import('ws')).WebSocket;
  } catch {
    NodeWebSocket = undefined; // the constructor then asks for options.WebSocket
  }
}

/** The WebSocket constructor this entry uses by default. */
export const DefaultWebSocket = NodeWebSocket;

export class Client extends BaseClient {
  constructor(options) {
    super({ WebSocket: NodeWebSocket, ...options });
  }
}
