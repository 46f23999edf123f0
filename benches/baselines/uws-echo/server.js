// Baseline for scripts/bench-compare.sh: a uWebSockets.js echo server, as its
// examples write one. The npm copy that installs here is the
// @trufflesuite/uws-js-unofficial build; it silently falls back to a pure-JS
// implementation when its native binary does not load, so this server loads
// the native binary itself and refuses to run without it.
// Usage: node server.js [HOST:PORT]
'use strict';
const path = require('path');

const pkg = path.dirname(require.resolve('@trufflesuite/uws-js-unofficial/package.json'));
const binary = path.join(
  pkg,
  'binaries',
  `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`
);
let uWS;
try {
  uWS = require(binary);
} catch (e) {
  console.error(`uws-echo: the native uWebSockets.js binary does not load: ${e.message}`);
  process.exit(3);
}

const [host, port] = (process.argv[2] || '127.0.0.1:9004').split(':');
uWS
  .App()
  .ws('/*', {
    compression: uWS.DISABLED,
    maxPayloadLength: 16 * 1024 * 1024,
    idleTimeout: 120,
    message: (ws, message, isBinary) => {
      ws.send(message, isBinary);
    },
  })
  .listen(host, Number(port), (token) => {
    if (!token) {
      console.error(`uws-echo: cannot listen on ${host}:${port}`);
      process.exit(1);
    }
    console.log(`listening ws=${host}:${uWS.us_socket_local_port(token)}`);
  });
