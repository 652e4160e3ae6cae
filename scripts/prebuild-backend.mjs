#!/usr/bin/env node
// Called by prebuildify in place of node-gyp (`<this> rebuild --target=… --release`), in the
// staging folder prebuildify was pointed at. It builds the addon from the source tree with
// cmake-js into <staging>/build/Release, where prebuildify picks it up. node-gyp's arguments
// are about Node headers, which cmake-js takes from node-api-headers instead, so they are ignored.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const source = process.env.FINESERVE_SOURCE_DIR;
const variant = process.env.FINESERVE_PREBUILD_VARIANT;
if (!source || (variant !== 'cpu' && variant !== 'cuda')) {
  console.error('prebuild-backend: run it through scripts/prebuild.mjs');
  process.exit(2);
}
const args = [
  require.resolve('cmake-js/bin/cmake-js'),
  'rebuild',
  '--directory', source,
  '--out', join(process.cwd(), 'build'),
  '--parallel', String(availableParallelism()),
  `--CDWITH_CUDA=${variant === 'cuda' ? 'ON' : 'OFF'}`,
  '--CDFINESERVE_TESTS=OFF',
];
const run = spawnSync(process.execPath, args, { cwd: source, stdio: 'inherit' });
process.exit(run.status ?? 1);
