// Builds the KV alloc/free microbenchmark (bench/cpp/kv_alloc_bench.cc: the CMake target
// fineserve_kv_alloc_bench, linked against fineserve_core like the C++ tests, so it compiles and
// links exactly what the addon does) and runs it, passing the arguments through; its JSON goes to
// stdout, the build's output to stderr. Exits non-zero when the build or the run fails.
//
// The build folder is the one cmake-js configured (build/, `npm run build:native`), or
// $FINESERVE_BUILD_DIR; cmake rebuilds only what changed.
//
//   node bench/build-alloc-bench.mjs --pool-bytes N --model ... (see kv_alloc_bench.cc)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const build = resolve(root, process.env.FINESERVE_BUILD_DIR ?? 'build');
const target = 'fineserve_kv_alloc_bench';

function die(message) {
  process.stderr.write(`kv-alloc-bench: ${message}\n`);
  process.exit(1);
}

if (!existsSync(join(build, 'CMakeCache.txt'))) {
  die(`${build} is not configured; run \`npm run build:native\` first (or set FINESERVE_BUILD_DIR)`);
}
// stdout of the build goes to stderr: stdout carries the benchmark's JSON only.
const made = spawnSync('cmake', ['--build', build, '--target', target, '--parallel', '2'], {
  cwd: root,
  stdio: ['ignore', process.stderr, 'inherit'],
});
if (made.status !== 0) {
  die(
    `building ${target} in ${build} failed (${made.error?.message ?? `exit ${made.status}`}); ` +
      'it is built with the C++ tests, in a source checkout with FINESERVE_TESTS not OFF',
  );
}
const run = spawnSync(join(build, target), process.argv.slice(2), { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
if (run.status !== 0) die(`${target} failed (${run.error?.message ?? `exit ${run.status ?? run.signal}`})`);
