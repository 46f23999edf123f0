// Builds the browser bundles: dist/shardcast-client.js (readable) and
// dist/shardcast-client.min.js (minified), both ES modules with no imports.
import { build } from 'esbuild';

const common = {
  entryPoints: ['src/index.js'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  legalComments: 'none',
  logLevel: 'warning',
};
await build({ ...common, outfile: 'dist/shardcast-client.js' });
await build({ ...common, outfile: 'dist/shardcast-client.min.js', minify: true, sourcemap: true });
