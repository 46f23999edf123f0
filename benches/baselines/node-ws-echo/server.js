// Baseline for scripts/bench-compare.sh: a WebSocket echo server with the
// `ws` package, written as its README shows (one process, one thread: how
// Node is usually deployed per core). Usage: node server.js [HOST:PORT]
'use strict';
const { WebSocketServer } = require('ws');

const [host, port] = (process.argv[2] || '127.0.0.1:9003').split(':');
// No permessage-deflate: loadgen does not negotiate it, and neither do the
// other servers in the comparison.
const wss = new WebSocketServer({ host, port: Number(port), perMessageDeflate: false });

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => {
  const a = wss.address();
  console.log(`listening ws=${a.address}:${a.port}`);
});
