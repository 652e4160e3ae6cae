// Builds the fuzz targets with ASan and UBSan and runs each for a bounded time: kv_pool_fuzz (the
// KvPool API, test/fuzz/kv_pool_fuzz.cc) and model_parser_fuzz (the GGUF, safetensors and JSON
// parsers, test/fuzz/model_parser_fuzz.cc). They share FINESERVE_FUZZ_SECONDS (default 60), split
// evenly.
//
// With clang and its libFuzzer runtime (CI installs them) they are coverage-guided libFuzzer
// binaries, built in build-fuzz/. Without (a machine with only g++), the same targets are linked
// to test/fuzz/replay_driver.cc in build-fuzz-replay/: every committed seed replayed, then seeded
// random mutations of them for the same time, so `npm test` passes on a fresh machine and still
// runs the parsers under the sanitizers. FINESERVE_FUZZ_CXX picks the compiler (clang++-N for
// libFuzzer; g++ forces the replay driver); FINESERVE_FUZZ_BUILD_DIR the build folder.
// Exits non-zero when the build fails or a target finds a crash, leak or timeout; the input that
// triggered it is left in <build>/artifacts/ (never the repository root).
//
// The committed seeds in test/fuzz/corpus/<target>/ are read only; inputs libFuzzer finds go to
// build-fuzz/corpus/<target>/, so repeated local runs build on each other without touching git.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { arch, availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
// Each target with the name of its seed/corpus folder.
const targets = [
  { name: 'kv_pool_fuzz', corpus: 'kv_pool' },
  { name: 'model_parser_fuzz', corpus: 'model_parser' },
];
const seconds = Number.parseInt(process.env.FINESERVE_FUZZ_SECONDS ?? '60', 10);
const packages = 'clang-14 libclang-rt-14-dev';

function die(message) {
  console.error(`test:fuzz: ${message}`);
  process.exit(1);
}

if (!Number.isInteger(seconds) || seconds <= 0) {
  die(`FINESERVE_FUZZ_SECONDS = "${process.env.FINESERVE_FUZZ_SECONDS}": expected a positive number of seconds`);
}

const capture = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
};

// libFuzzer ships as a clang runtime library, in a separate Debian package from clang itself;
// find a clang++ that has it rather than failing at link time with an obscure message.
function fuzzerRuntime(cxx) {
  const dir = capture(cxx, ['-print-runtime-dir']);
  if (!dir) return null;
  const cpu = arch() === 'x64' ? 'x86_64' : arch() === 'arm64' ? 'aarch64' : arch();
  // Older clang: lib/linux/libclang_rt.fuzzer-x86_64.a; per-target layout: .../libclang_rt.fuzzer.a
  for (const name of [`libclang_rt.fuzzer-${cpu}.a`, 'libclang_rt.fuzzer.a']) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

// Looked for on every run (never remembered), so installing clang later switches to libFuzzer.
const wanted = process.env.FINESERVE_FUZZ_CXX;
const candidates = [wanted, 'clang++', ...[19, 18, 17, 16, 15, 14].map((v) => `clang++-${v}`)].filter(Boolean);
const present = candidates.filter((cxx) => capture(cxx, ['--version']) !== null);
if (wanted && !present.includes(wanted)) die(`FINESERVE_FUZZ_CXX = "${wanted}" does not run`);
// A compiler that was asked for is used as it is: libFuzzer if it has it, else the replay driver.
const libFuzzerCxx = (wanted ? [wanted] : present).find((c) => fuzzerRuntime(c) !== null);
let cxx = libFuzzerCxx;
if (!cxx) {
  cxx = wanted ?? [process.env.CXX, 'g++', 'c++'].filter(Boolean).find((c) => capture(c, ['--version']) !== null);
  if (!cxx) die('no C++ compiler found (looked for clang++, g++, c++ and $CXX)');
  console.log(
    `test:fuzz: ${present.length ? `${present.join(', ')} without the libFuzzer runtime` : 'no clang++'}; ` +
      `building the targets with ${cxx} and test/fuzz/replay_driver.cc (the corpus replayed, then seeded random ` +
      `mutations; no coverage guidance). For libFuzzer: apt-get install ${packages}.`,
  );
}
const replay = cxx !== libFuzzerCxx;
const build = process.env.FINESERVE_FUZZ_BUILD_DIR
  ? resolve(process.env.FINESERVE_FUZZ_BUILD_DIR)
  : join(root, replay ? 'build-fuzz-replay' : 'build-fuzz');
const shown = (p) => (p.startsWith(`${root}/`) ? p.slice(root.length + 1) : p);
const artifacts = join(build, 'artifacts');

const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts }).status ?? 1;

const jobs = String(Math.max(1, Math.min(2, availableParallelism())));
if (
  run('cmake', [
    '-S', root,
    '-B', build,
    `-DCMAKE_CXX_COMPILER=${cxx}`,
    '-DCMAKE_BUILD_TYPE=Release',
    '-DFINESERVE_FUZZ=ON',
    '-DWITH_CUDA=OFF',
    '-DFINESERVE_TESTS=OFF',
  ]) !== 0
) {
  die(`cmake configure of ${shown(build)}/ failed`);
}
if (run('cmake', ['--build', build, '--target', ...targets.map((t) => t.name), '--parallel', jobs]) !== 0) {
  die(`building ${targets.map((t) => t.name).join(' and ')} failed`);
}
mkdirSync(artifacts, { recursive: true });

// An even split; the first target gets the odd second. Each gets at least one.
const share = targets.map((_, i) => Math.max(1, Math.floor(seconds / targets.length) + (i < seconds % targets.length ? 1 : 0)));
const failures = [];
for (const [i, target] of targets.entries()) {
  const seeds = join(root, 'test', 'fuzz', 'corpus', target.corpus);
  const corpus = join(build, 'corpus', target.corpus);
  mkdirSync(corpus, { recursive: true });
  const dirs = [corpus];
  if (existsSync(seeds) && readdirSync(seeds).length > 0) dirs.push(seeds);

  const started = Date.now();
  console.log(
    `test:fuzz: ${target.name}: ${cxx}${replay ? ' (replay driver)' : ''}, ${share[i]} s, corpus ${dirs.map(shown).join(' + ')}`,
  );
  // One process in the foreground (no -jobs/-workers: with those libFuzzer forks a child and sends
  // its output to fuzz-N.log files). -artifact_prefix keeps crash-*/leak-*/timeout-* in the build
  // folder. The replay driver takes the same flags (and ignores the ones it has no use for).
  const status = run(
    join(build, target.name),
    [
      ...dirs,
      `-max_total_time=${share[i]}`,
      '-timeout=20',
      '-rss_limit_mb=2048',
      '-max_len=4096',
      '-print_final_stats=1',
      `-artifact_prefix=${artifacts}/`,
    ],
    { cwd: build },
  );
  if (status !== 0) {
    // Only this run's artifacts: older ones may be left from earlier runs.
    const found = readdirSync(artifacts).filter((f) => statSync(join(artifacts, f)).mtimeMs >= started - 1000);
    failures.push(
      `${target.name} failed (exit ${status}). Reproduce with:\n` +
        (found.length
          ? found.map((f) => `  ${shown(join(build, target.name))} ${shown(join(artifacts, f))}`).join('\n')
          : '  (no artifact was written; see the output above)'),
    );
  }
}
if (failures.length > 0) die(failures.join('\n'));
