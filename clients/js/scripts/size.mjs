// Prints the size of the minified bundle, raw and gzipped (level 9).
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const file = 'dist/shardcast-client.min.js';
const raw = readFileSync(file);
const gz = gzipSync(raw, { level: 9 });
console.log(`${file}: ${raw.length} bytes minified, ${gz.length} bytes minified+gzipped`);
