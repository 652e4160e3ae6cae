// Every benchmark runs once at a toy size (its --smoke mode) so none rots between the runs that
// measure: each must exit 0 and write its JSON with real figures (no null where a number belongs).
// bench:serve-http has its own test (bench-serve-http.test.ts); the C++ microbenchmarks
// (kv_alloc_bench through bench:kv-slab here, linear_quant_bench and gpu_bench under ctest) are
// CMake targets built with the C++ tests. bench:engine-cpu runs fineserve alone: its peer,
// node-llama-cpp, is a ~725 MB install that npm test does not make. bench:cuda-report runs on the
// committed SIMT sample (bench/cuda/sample-simt/). About 30 s on 2 cores.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'fineserve-bench-smoke-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs `node --import tsx <script> ...args`; returns its exit status and output. */
function bench(script: string, args: readonly string[], env: NodeJS.ProcessEnv = {}, timeout = 120_000) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout,
  });
  return { status: r.status, output: `${r.stdout}${r.stderr}${r.error ? `\n${r.error.message}` : ''}` };
}
function smoke(script: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): string {
  const r = bench(script, args, env);
  assert.equal(r.status, 0, `${script} ${args.join(' ')} exited ${r.status}:\n${r.output.slice(-4000)}`);
  return r.output;
}
const json = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T;
const real = (x: unknown, what: string): void => assert.ok(typeof x === 'number' && Number.isFinite(x), `${what}: ${String(x)}`);
const out = (name: string): string => join(scratch, name);

// Which test covers each bench:* script, so a new benchmark without a smoke run fails here.
const COVERED: Record<string, string> = {
  'bench:kv-slab': 'bench:kv-slab --smoke',
  'bench:engine-cpu': 'bench:engine-cpu --smoke',
  'bench:sim': 'bench:sim --smoke',
  'bench:quant-quality': 'bench:quant-quality --smoke',
  'bench:cuda-report': 'bench:cuda-report on the SIMT sample',
  'bench:serve-cpu': 'bench:serve-cpu --smoke',
  'bench:serve-memory': 'bench:serve-memory --smoke',
  'bench:serve-http': 'test/bench-serve-http.test.ts',
  'bench:serve-multi': 'test/bench-serve-multi.test.ts',
};

test('every bench:* script has a smoke run', () => {
  const scripts = Object.keys(json<{ scripts: Record<string, string> }>(join(ROOT, 'package.json')).scripts).filter((s) => s.startsWith('bench:'));
  assert.deepEqual(scripts.filter((s) => !(s in COVERED)), [], 'benchmarks without a smoke run: add one here');
});

test('bench:kv-slab --smoke: replays and microbenchmark, every figure measured', () => {
  smoke('bench/kv-slab.ts', ['--smoke', '--out', out('kv-slab.json')]);
  const r = json<{ targets: Record<string, { measured: unknown }>; policies: { label: string; tokensAtSaturation: unknown }[]; microbench: { policies?: { policy: string; single?: { allocNsPerBlock: unknown } }[] } }>(out('kv-slab.json'));
  for (const [name, t] of Object.entries(r.targets)) real(t.measured, `targets.${name}`);
  assert.ok(r.policies.length >= 4, 'every policy replayed');
  for (const p of r.policies) real(p.tokensAtSaturation, `${p.label} tokensAtSaturation`);
  assert.ok((r.microbench.policies ?? []).length >= 4, 'the microbenchmark timed every policy');
  for (const p of r.microbench.policies ?? []) real(p.single?.allocNsPerBlock, `${p.policy} allocNsPerBlock`);
});

test('bench:kv-slab fails loudly when its microbenchmark cannot be built', () => {
  const r = bench('bench/kv-slab.ts', ['--smoke', '--out', out('kv-slab-broken.json')], { FINESERVE_BUILD_DIR: join(scratch, 'no-such-build') });
  assert.notEqual(r.status, 0, `exit 0 with no microbenchmark:\n${r.output.slice(-2000)}`);
  assert.match(r.output, /kv-slab: FAILED/);
  assert.match(r.output, /kv_alloc_bench failed/);
});

test('bench:engine-cpu --smoke: fineserve prefill and decode tok/s', () => {
  smoke('bench/engine-cpu.ts', ['--smoke', '--out', out('engine-cpu.json')]);
  const r = json<{ models: Record<string, { metrics: Record<string, { fineserve: unknown }> }> }>(out('engine-cpu.json'));
  const metrics = Object.entries(r.models['stories260K']?.metrics ?? {});
  assert.deepEqual(metrics.map(([m]) => m).sort(), ['decode', 'decode-4', 'prefill']);
  for (const [m, v] of metrics) real(v.fineserve, `${m} tok/s`);
});

test('bench:engine-cpu --smoke --shape/--gguf: generated shapes and a GGUF file benched under their keys', () => {
  const fixture = fileURLToPath(new URL('../../shared/fixtures/stories260K/stories260K.gguf', import.meta.url));
  assert.ok(existsSync(fixture), `missing fixture ${fixture} (the stories260K fixture is expected in ../shared/fixtures)`);
  const dir = out('engine-cpu-models');
  const args = ['--smoke', '--shape', 'tiny', '--layers', '1', '--vocab', '64', '--models-dir', dir];
  const first = smoke('bench/engine-cpu.ts', [...args, '--types', 'f16,q8_0', '--gguf', fixture, '--out', out('engine-cpu-shapes.json')]);
  type Model = { model: { layers: number; vocabSize: number; source: string }; metrics: Record<string, { fineserve: unknown }> };
  const r = json<{ models: Record<string, Model> }>(out('engine-cpu-shapes.json'));
  // --smoke benches the named models only: the fixture's own key comes from --gguf here.
  assert.deepEqual(Object.keys(r.models), ['stories260K', 'tiny-l1-v64-f16', 'tiny-l1-v64-q8_0']);
  assert.equal(r.models['stories260K']!.model.source, '--gguf');
  for (const key of ['tiny-l1-v64-f16', 'tiny-l1-v64-q8_0']) {
    assert.deepEqual([r.models[key]!.model.layers, r.models[key]!.model.vocabSize], [1, 64], `${key}: the overrides reached the generator`);
  }
  for (const [key, m] of Object.entries(r.models)) {
    assert.deepEqual(Object.keys(m.metrics).sort(), ['decode', 'decode-4', 'prefill'], key);
    for (const [name, v] of Object.entries(m.metrics)) real(v.fineserve, `${key} ${name} tok/s`);
  }
  assert.match(first, /generating .*tiny-l1-v64-f16\.gguf/);
  // Generated once: a second run reuses the cached F16 file.
  const again = smoke('bench/engine-cpu.ts', [...args, '--out', out('engine-cpu-shapes-again.json')]);
  assert.doesNotMatch(again, /generating/);
  assert.deepEqual(Object.keys(json<{ models: object }>(out('engine-cpu-shapes-again.json')).models), ['tiny-l1-v64-f16']);
});

test('bench:engine-cpu --gguf fails naming a file that is missing or not a GGUF', () => {
  for (const [file, why] of [[join(scratch, 'no-such.gguf'), /no such file/], [join(ROOT, 'package.json'), /not a GGUF file/]] as const) {
    const r = bench('bench/engine-cpu.ts', ['--smoke', '--gguf', file, '--out', out('engine-cpu-bad.json')]);
    assert.notEqual(r.status, 0, `exit 0 with --gguf ${file}`);
    assert.ok(r.output.includes(file), `the error names ${file}:\n${r.output.slice(-1000)}`);
    assert.match(r.output, why);
  }
});

test('bench:sim --smoke: every system simulated, headline ratios', () => {
  const dir = out('sim');
  smoke('bench/sim/main.ts', ['--smoke', '--out', dir]);
  const r = json<{ runs: { system: string; sloAttainment: unknown; tokenThroughput: unknown }[]; headline: { sustainedRateAt99: Record<string, unknown> }[] }>(join(dir, 'sim-smoke.json'));
  assert.ok(r.runs.length > 0);
  for (const run of r.runs) {
    real(run.sloAttainment, `${run.system} sloAttainment`);
    real(run.tokenThroughput, `${run.system} tokenThroughput`);
  }
  assert.equal(r.headline.length, 1);
  for (const [name, v] of Object.entries(r.headline[0]!.sustainedRateAt99)) real(v, `${name} sustained rate`);
});

test('bench:quant-quality --smoke: perplexity per precision', () => {
  smoke('bench/quant-quality.ts', ['--smoke', '--out', out('quant-quality.json')]);
  const r = json<{ rows: { name: string; perplexity: unknown; deltaPercent: unknown }[]; kvKl: { kv: string; meanKl: unknown }[] }>(out('quant-quality.json'));
  assert.deepEqual(r.rows.map((x) => x.name), ['fp32', 'w8a8', 'GGUF Q8_0']);
  for (const row of r.rows) {
    real(row.perplexity, `${row.name} perplexity`);
    real(row.deltaPercent, `${row.name} deltaPercent`);
  }
  assert.deepEqual(r.kvKl.map((x) => x.kv), ['int4']);
  real(r.kvKl[0]!.meanKl, 'int4 KV KL divergence');
});

test('bench:cuda-report on the committed SIMT sample', () => {
  smoke('bench/cuda-report.ts', ['bench/cuda/sample-simt', '--out', out('cuda.json')]);
  const r = json<{ simulated: boolean; decode: { tokPerS: unknown; rooflineFraction: unknown }[]; prefill: { tflops: unknown }[] }>(out('cuda.json'));
  assert.equal(r.simulated, true);
  assert.ok(r.decode.length > 0 && r.prefill.length > 0);
  for (const d of r.decode) {
    real(d.tokPerS, 'decode tok/s');
    real(d.rooflineFraction, 'decode roofline fraction');
  }
  for (const p of r.prefill) real(p.tflops, 'prefill TFLOP/s');
});

test('bench:serve-cpu --smoke: both policies serve, ratios measured', () => {
  smoke('bench/serve-cpu.ts', ['--smoke', '--out', out('serve-cpu.json')]);
  const r = json<{ points: { fineserve: { tokensPerSecond: number }; staticFcfs: { tokensPerSecond: number }; ratio: Record<string, unknown> }[] }>(out('serve-cpu.json'));
  assert.equal(r.points.length, 1);
  const p = r.points[0]!;
  assert.ok(p.fineserve.tokensPerSecond > 0 && p.staticFcfs.tokensPerSecond > 0);
  for (const [k, v] of Object.entries(p.ratio)) real(v, `ratio.${k}`);
});

test('bench:serve-memory --smoke: every KV pool and both policies serve, ratios and concurrency measured', () => {
  smoke('bench/serve-memory.ts', ['--smoke', '--out', out('serve-memory.json')]);
  type System = { label: string; tokensPerSecond: number; sloAttainment: number; meanRunning: number; samples: { running: Record<string, number> }[] };
  const r = json<{ systems: System[]; batchScaling: { stepMs: unknown; tokensPerSecond: unknown }[]; targets: { slabVsStatic: { throughput: unknown }; fineserveVsStaticFcfs: { attainment: unknown; throughput: unknown } }; failures: string[] }>(out('serve-memory.json'));
  assert.deepEqual(r.failures, []);
  assert.deepEqual(r.systems.map((s) => s.label), ['kv-slab', 'static', 'unified', 'paged', 'fineserve', 'static-fcfs', 'kv-slab-fcfs']);
  for (const s of r.systems) {
    assert.ok(s.tokensPerSecond > 0, `${s.label} served tokens`);
    real(s.sloAttainment, `${s.label} attainment`);
    assert.ok(s.samples.length > 0 && Object.keys(s.samples[0]!.running).length === 4, `${s.label} sampled four models' concurrency`);
  }
  for (const p of r.batchScaling) {
    real(p.stepMs, 'batch step ms');
    real(p.tokensPerSecond, 'batch tok/s');
  }
  real(r.targets.slabVsStatic.throughput, 'kv-slab/static throughput');
  real(r.targets.fineserveVsStaticFcfs.throughput, 'fineserve/static-fcfs throughput');
});

test('bench:serve-memory --repeats: rounds in rotated order, each system by its median round, paired ratios', () => {
  smoke('bench/serve-memory.ts', ['--smoke', '--repeats', '3', '--only', 'kv-slab,static', '--out', out('serve-memory-repeats.json')]);
  type Summary = { label: string; tokensPerSecond: number };
  const r = json<{ systems: Summary[]; rounds: Summary[][]; targets: { rounds: { count: number; slabVsStaticThroughput: { perRound: unknown[]; median: unknown } } } }>(out('serve-memory-repeats.json'));
  assert.deepEqual(r.rounds.map((round) => round.map((s) => s.label)), [['kv-slab', 'static'], ['static', 'kv-slab'], ['kv-slab', 'static']]);
  for (const s of r.systems) {
    const tps = r.rounds.flat().filter((x) => x.label === s.label).map((x) => x.tokensPerSecond).sort((a, b) => a - b);
    assert.equal(s.tokensPerSecond, tps[1], `${s.label} is reported by its median round`);
  }
  assert.equal(r.targets.rounds.count, 3);
  r.targets.rounds.slabVsStaticThroughput.perRound.forEach((x, i) => real(x, `round ${i + 1} kv-slab/static`));
  real(r.targets.rounds.slabVsStaticThroughput.median, 'paired median');
});
