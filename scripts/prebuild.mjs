// Makes the prebuilt addons that the npm package ships: `node scripts/prebuild.mjs cpu|cuda`.
// prebuildify names, strips and places the binary (prebuilds/<platform>-<arch>/<name>.node); the
// compile itself is delegated to cmake-js through scripts/prebuild-backend.mjs, which prebuildify
// calls in place of node-gyp. Each variant builds in its own folder so the developer's build/
// is left alone.
//   cpu:  fineserve.node       baseline x86-64 + AVX2/AVX-512 kernels chosen at run time
//   cuda: fineserve.cuda.node  the same plus the CUDA backend (runtime linked statically)
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const variant = process.argv[2];
if (variant !== 'cpu' && variant !== 'cuda') {
  console.error('usage: node scripts/prebuild.mjs cpu|cuda');
  process.exit(2);
}

const staging = join(root, `build-prebuild-${variant}`);
mkdirSync(staging, { recursive: true });
const backend = join(root, 'scripts', 'prebuild-backend.mjs'); // executable: prebuildify spawns it without a shell
const args = [
  require.resolve('prebuildify/bin.js'),
  '--napi',
  '--strip',
  '--name', variant === 'cpu' ? 'fineserve' : 'fineserve.cuda',
  '--out', root,
  '--node-gyp', backend,
  staging,
];
const run = spawnSync(process.execPath, args, {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, FINESERVE_PREBUILD_VARIANT: variant, FINESERVE_SOURCE_DIR: root },
});
process.exit(run.status ?? 1);
