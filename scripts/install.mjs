// `npm install` hook. A published package carries prebuilt addons in prebuilds/<platform>-<arch>/;
// when one fits this platform nothing is compiled. Otherwise (a source checkout, an unusual
// platform, or FINESERVE_BUILD_FROM_SOURCE=1) the addon is built with cmake-js, which is
// incremental, so re-running it after a source change rebuilds only what changed.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);

function fittingPrebuild() {
  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  if (!existsSync(dir)) return undefined;
  // The CPU prebuild runs everywhere; a CUDA one alone is not enough for a host without a GPU.
  return readdirSync(dir).find((f) => f.endsWith('.node') && !f.split('.').includes('cuda'));
}

const prebuild = process.env.FINESERVE_BUILD_FROM_SOURCE === '1' ? undefined : fittingPrebuild();
if (prebuild) {
  console.log(`fineserve: using prebuilt addon prebuilds/${process.platform}-${process.arch}/${prebuild}`);
  process.exit(0);
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const jobs = String(Math.max(1, availableParallelism()));
console.log(`fineserve: no prebuilt addon for ${process.platform}-${process.arch}; building from source with cmake-js (-j${jobs})`);
const run = spawnSync(process.execPath, [cmakeJs, 'build', '--parallel', jobs], { cwd: root, stdio: 'inherit' });
if (run.status !== 0) {
  console.error(
    'fineserve: building the native addon failed. It needs cmake >= 3.19 and a C++17 compiler ' +
      '(Debian: apt-get install cmake g++). Set FINESERVE_BUILD_FROM_SOURCE=1 to force a rebuild.',
  );
  process.exit(run.status ?? 1);
}
