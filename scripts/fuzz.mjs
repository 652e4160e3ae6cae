// Builds the libFuzzer targets with clang, ASan and UBSan in build-fuzz/ and runs each for a
// bounded time: kv_pool_fuzz (the KvPool API, test/fuzz/kv_pool_fuzz.cc) and model_parser_fuzz
// (the GGUF, safetensors and JSON parsers, test/fuzz/model_parser_fuzz.cc). They share
// FINESERVE_FUZZ_SECONDS (default 60), split evenly.
// Exits non-zero when the build fails or a fuzzer finds a crash, leak or timeout; the input that
// triggered it is left in build-fuzz/artifacts/ (never the repository root).
//
// The committed seeds in test/fuzz/corpus/<target>/ are read only; inputs the fuzzers find go to
// build-fuzz/corpus/<target>/, so repeated local runs build on each other without touching git.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { arch, availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const build = join(root, 'build-fuzz');
// Each target with the name of its seed/corpus folder.
const targets = [
  { name: 'kv_pool_fuzz', corpus: 'kv_pool' },
  { name: 'model_parser_fuzz', corpus: 'model_parser' },
];
const artifacts = join(build, 'artifacts');
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

const candidates = [process.env.FINESERVE_FUZZ_CXX, 'clang++', ...[19, 18, 17, 16, 15, 14].map((v) => `clang++-${v}`)]
  .filter(Boolean);
const found = candidates.filter((cxx) => capture(cxx, ['--version']) !== null);
if (found.length === 0) {
  die(
    'clang++ was not found; the fuzz target needs clang and libFuzzer.\n' +
      `Install them (Debian: apt-get install ${packages}), or set FINESERVE_FUZZ_CXX.`,
  );
}
const cxx = found.find((c) => fuzzerRuntime(c) !== null);
if (!cxx) {
  die(
    `${found.join(', ')} found, but without the libFuzzer runtime (libclang_rt.fuzzer).\n` +
      `Install it (Debian: apt-get install ${packages}).`,
  );
}

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
  die('cmake configure of build-fuzz/ failed');
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
    `test:fuzz: ${target.name}: ${cxx}, ${share[i]} s, corpus ${dirs.map((d) => d.slice(root.length + 1)).join(' + ')}`,
  );
  // One process in the foreground (no -jobs/-workers: with those libFuzzer forks a child and sends
  // its output to fuzz-N.log files). -artifact_prefix keeps crash-*/leak-*/timeout-* in build-fuzz/.
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
          ? found.map((f) => `  build-fuzz/${target.name} build-fuzz/artifacts/${f}`).join('\n')
          : '  (no artifact was written; see the output above)'),
    );
  }
}
if (failures.length > 0) die(failures.join('\n'));
