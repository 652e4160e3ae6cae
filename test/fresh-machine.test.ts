// `npm test` on a fresh machine with only what the install needs (Node, g++, cmake): clang, nvcc
// and any system doctest are hidden here, in a fresh build folder of our own, and
//  - the C++ tests are still configured, compiled against the vendored doctest
//    (test/cpp/vendor/doctest), with ctest's per-test-case discovery;
//  - a build folder configured without nvcc re-runs its configure step on the next build once
//    something is installed where nvcc would land, and looks for nvcc again (found, where this
//    machine has one);
//  - test:fuzz (scripts/fuzz.mjs) builds the fuzz targets with g++ and its replay driver, replays
//    the committed corpus and runs seeded mutations, exiting 0.
// About 2 minutes on 2 cores, nearly all of it compiling the two fuzz targets under ASan/UBSan.
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HIDDEN = /^(clang|nvcc|cuda)/;

let scratch: string;
let bin: string;  // one folder of links to everything on PATH except clang* and nvcc
let realNvcc: string | undefined;

const env = (): NodeJS.ProcessEnv => {
  const e: NodeJS.ProcessEnv = { ...process.env, PATH: bin };
  for (const k of ['CXX', 'CC', 'CUDACXX', 'CUDAHOSTCXX', 'FINESERVE_FUZZ_CXX', 'FINESERVE_FUZZ_BUILD_DIR', 'CUDA_PATH']) delete e[k];
  return e;
};
const sh = (cmd: string, args: readonly string[], extra: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> =>
  spawnSync(cmd, args, { cwd: ROOT, env: { ...env(), ...extra }, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
const ok = (r: SpawnSyncReturns<string>, what: string): string => {
  assert.equal(r.status, 0, `${what} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stdout}\n${r.stderr}`);
  return `${r.stdout}${r.stderr}`;
};

before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'fineserve-fresh-'));
  bin = join(scratch, 'bin');
  mkdirSync(bin);
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir || !existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const target = join(dir, name);
      if (HIDDEN.test(name)) {
        if (name === 'nvcc' && realNvcc === undefined) realNvcc = target;
        continue;
      }
      if (existsSync(join(bin, name))) continue;  // PATH order: the first one wins
      try {
        if (!statSync(target).isDirectory()) symlinkSync(target, join(bin, name));
      } catch {
        // a dangling link or an unreadable entry: not a tool anyone needs here
      }
    }
  }
  assert.ok(existsSync(join(bin, 'g++')) && existsSync(join(bin, 'cmake')), 'g++ and cmake are on PATH');
  assert.equal(sh('sh', ['-c', 'command -v clang++ clang++-14 nvcc']).stdout.trim(), '', 'clang and nvcc are hidden');
});
after(() => rmSync(scratch, { recursive: true, force: true }));

test('the C++ tests configure and compile against the vendored doctest, with no system doctest or nvcc', { timeout: 5 * 60_000 }, () => {
  const build = join(scratch, 'tools');
  const out = ok(
    sh('cmake', ['-S', ROOT, '-B', build, '-G', 'Unix Makefiles', '-DCMAKE_BUILD_TYPE=Release', '-DCMAKE_DISABLE_FIND_PACKAGE_doctest=ON', '-DCMAKE_EXPORT_COMPILE_COMMANDS=ON']),
    'configure',
  );
  assert.match(out, /nvcc not found, building without CUDA/);
  assert.ok(existsSync(join(build, 'CTestTestfile.cmake')), 'ctest is configured');
  const ctest = readFileSync(join(build, 'CTestTestfile.cmake'), 'utf8');
  assert.match(ctest, /fineserve_core_tests_include/, 'doctest_discover_tests lists the test cases for ctest');
  const help = ok(sh('cmake', ['--build', build, '--target', 'help']), 'cmake --build --target help');
  for (const t of ['fineserve_core_tests', 'fineserve_gpu_simt_tests', 'fineserve_kv_alloc_bench']) assert.match(help, new RegExp(`\\b${t}\\b`));

  // The doctest main, compiled: its dependency file names the vendored header, no other.
  ok(sh('make', ['-C', build, 'test/cpp/main.cc.o']), 'compiling test/cpp/main.cc');
  const deps = readFileSync(join(build, 'CMakeFiles', 'fineserve_core_tests.dir', 'test', 'cpp', 'main.cc.o.d'), 'utf8');
  assert.ok(deps.includes(join(ROOT, 'test', 'cpp', 'vendor', 'doctest', 'doctest.h')), 'main.cc includes the vendored doctest.h');
  assert.ok(!deps.includes('/usr/include/doctest'), 'and not a system one');

  // Installing something where nvcc would land (here: nvcc itself, where the machine has it, else
  // a new file in that folder) makes the next build re-run the configure step, which looks again.
  const stamp = new Date(Date.now() + 2000);
  if (realNvcc !== undefined) symlinkSync(realNvcc, join(bin, 'nvcc'));
  utimesSync(bin, stamp, stamp);
  // nvcc may need a host compiler other than g++ (CI: CUDA 11.8 with clang-14): keep the one given.
  const host = process.env.CUDAHOSTCXX ? spawnSync('sh', ['-c', `command -v ${process.env.CUDAHOSTCXX}`], { encoding: 'utf8' }).stdout.trim() : '';
  const rebuilt = ok(sh('make', ['-C', build, 'cmake_check_build_system'], host ? { CUDAHOSTCXX: host } : {}), 'the next build');
  assert.match(rebuilt, /-- Configuring done/, 'the configure step ran again');
  const cache = readFileSync(join(build, 'CMakeCache.txt'), 'utf8');
  if (realNvcc !== undefined) {
    assert.match(rebuilt, /CUDA backend ON/, 'nvcc is found once installed');
    assert.doesNotMatch(cache, /CMAKE_CUDA_COMPILER:[A-Z]*=.*NOTFOUND/);
  } else {
    assert.match(rebuilt, /nvcc not found/, 'the configure step looked for nvcc again');
  }
});

test('test:fuzz without clang builds the fuzz targets with g++ and the replay driver, and runs them', { timeout: 6 * 60_000 }, () => {
  const build = join(scratch, 'fuzz');
  const out = ok(
    sh(process.execPath, [join(ROOT, 'scripts', 'fuzz.mjs')], { FINESERVE_FUZZ_BUILD_DIR: build, FINESERVE_FUZZ_SECONDS: '4' }),
    'scripts/fuzz.mjs',
  );
  assert.match(out, /no clang\+\+; building the targets with g\+\+ and test\/fuzz\/replay_driver\.cc/);
  for (const [target, corpus] of [['kv_pool_fuzz', 'kv_pool'], ['model_parser_fuzz', 'model_parser']] as const) {
    assert.match(out, new RegExp(`test:fuzz: ${target}: g\\+\\+ \\(replay driver\\)`));
    const seeds = readdirSync(join(ROOT, 'test', 'fuzz', 'corpus', corpus)).length;
    assert.match(out, new RegExp(`replayed ${seeds} corpus input\\(s\\)`), `${target} replays its ${seeds} seeds`);
  }
  const mutated = [...out.matchAll(/replay_driver: (\d+) mutated run\(s\)/g)].map((m) => Number(m[1]));
  assert.equal(mutated.length, 2);
  for (const n of mutated) assert.ok(n > 0, 'mutations ran');
  const cache = readFileSync(join(build, 'CMakeCache.txt'), 'utf8');
  assert.match(cache, /FINESERVE_FUZZ_HAVE_ASAN:INTERNAL=1/, 'under ASan/UBSan');
});
