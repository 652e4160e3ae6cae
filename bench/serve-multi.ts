/**
 * bench:serve-multi: the multi-device Engine on two CPU partitions, under a workload whose
 * per-model rates shift mid-run. Three systems side by side, on the same arrival trace in one
 * process run:
 *   - one-device: every model on one device with every core (the Engine before multi-device);
 *   - place-once: two 1-thread partitions, FineServe placement at load for the expected rates;
 *   - online: the same, re-planning every second at the measured rates and migrating live.
 * Reports attainment and throughput per phase (before and after the shift), the migrations and
 * their cost; JSON in bench/results/serve-multi.json and one chart beside it.
 *
 *   node --import tsx bench/serve-multi.ts [--seconds 20] [--layers 2] [--seed 1]
 *        [--before L,L,L,L --after L,L,L,L | --hot-after L [--others L]] [--out FILE] [--smoke]
 *
 * The models: the demo's generated Llama shape (768 wide, 8k vocabulary, f16, `--layers` deep) in
 * four precisions, one a hot model whose rate jumps at the shift. Rates are set from
 * each model's measured solo request time, so the load means the same on any machine.
 * @module
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { Engine, type EngineOptions, type GenerationResult, type PlacementEvent, type PrecisionName } from '../lib/index.js';
import { generateModel } from '../lib/generate.js';
import { Rng } from '../lib/sim/rng.js';
import { lineChart } from './sim/charts.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    layers: { type: 'string', default: '2' },
    seed: { type: 'string', default: '1' },
    // Loads per model (in MODELS order) as shares of a core, before and after the shift. The
    // default moves demand between models: the busiest cools, the three others heat up.
    before: { type: 'string', default: '0.6,0.1,0.1,0.1' },
    after: { type: 'string', default: '0.1,0.45,0.45,0.45' },
    // Or one model heating up while the others stay (overrides --before/--after): the hot
    // model 0.1 of a core before, --hot-after after; the others --others throughout.
    'hot-after': { type: 'string' },
    others: { type: 'string', default: '0.3' },
    out: { type: 'string' },
    smoke: { type: 'boolean', default: false },
  },
});
const smoke = values.smoke === true;
const root = new URL('..', import.meta.url).pathname;
const outFile = resolve(values.out ?? join(root, 'bench/results', smoke ? 'serve-multi-smoke.json' : 'serve-multi.json'));
const phaseMs = (smoke ? 2 : Number(values.seconds)) * 1000;
const seed = Number(values.seed);
const MiB = 2 ** 20;

if (availableParallelism() < 2) {
  console.error('bench:serve-multi needs 2 cores (two 1-thread partitions); this process may use 1');
  process.exit(1);
}

const PROMPT = smoke ? 16 : 64;
const OUTPUT = smoke ? 16 : 32;
const MODELS: readonly { id: string; precision: PrecisionName; hot: boolean }[] = [
  { id: 'f16', precision: 'auto', hot: true },
  { id: 'w8a8', precision: 'w8a8', hot: false },
  { id: 'w4a16', precision: 'w4a16', hot: false },
  { id: 'fp8', precision: 'fp8', hot: false },
];

const hotAfter = values['hot-after'];
const loads =
  hotAfter === undefined
    ? { before: loadList('before', values.before!), after: loadList('after', values.after!) }
    : { before: MODELS.map((m) => (m.hot ? 0.1 : Number(values.others))), after: MODELS.map((m) => (m.hot ? Number(hotAfter) : Number(values.others))) };

function loadList(flag: 'before' | 'after', text: string): number[] {
  const xs = text.split(',').map(Number);
  if (xs.length !== MODELS.length || xs.some((x) => !(x > 0))) {
    console.error(`--${flag} wants ${MODELS.length} positive loads (shares of a core, in the order ${MODELS.map((m) => m.id).join(', ')}); got "${text}"`);
    process.exit(2);
  }
  return xs;
}

async function modelFile(): Promise<string> {
  if (smoke) {
    const f = resolve(root, '../shared/fixtures/stories260K/stories260K.gguf');
    if (!existsSync(f)) throw new Error(`bench:serve-multi --smoke needs the stories260K fixture at ${f}`);
    return f;
  }
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'fineserve');
  const path = join(dir, `demo-llama-${values.layers}l-v8k-f16.gguf`);
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true });
    console.log(`generating ${path} (once)`);
    await generateModel({ shape: 'llama-100m', layers: Number(values.layers), vocab: 8192, dtype: 'f16', format: 'gguf', out: path, seed: 7 });
  }
  return path;
}

interface Arrival {
  readonly model: string;
  readonly atMs: number;
  readonly phase: 'before' | 'after';
  readonly tokens: number[];
}

/** Poisson arrivals per model and phase at the given rates (req/s). */
function trace(rates: Record<'before' | 'after', Record<string, number>>, vocab: number): Arrival[] {
  const rng = new Rng(seed);
  const out: Arrival[] = [];
  for (const phase of ['before', 'after'] as const) {
    const start = phase === 'before' ? 0 : phaseMs;
    for (const [model, rate] of Object.entries(rates[phase])) {
      for (let t = start + (-Math.log(1 - rng.next()) * 1000) / rate; t < start + phaseMs; t += (-Math.log(1 - rng.next()) * 1000) / rate) {
        out.push({ model, atMs: t, phase, tokens: Array.from({ length: PROMPT }, () => 3 + Math.floor(rng.next() * (vocab - 3))) });
      }
    }
  }
  return out.sort((a, b) => a.atMs - b.atMs);
}

interface PhaseReport {
  readonly requests: number;
  readonly attainment: number;
  readonly tokensPerSecond: number;
  readonly goodTokensPerSecond: number;
  readonly ttftP50Ms: number;
  readonly ttftP99Ms: number;
}

function pct(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}

function phaseReport(done: readonly { a: Arrival; r: GenerationResult; endMs: number }[], phase: 'before' | 'after'): PhaseReport {
  const mine = done.filter((d) => d.a.phase === phase);
  // The phase's requests over the time from its start until the last of them ended: a backlog
  // that outlasts the phase lowers its throughput.
  const start = phase === 'before' ? 0 : phaseMs;
  const spanMs = Math.max(phaseMs, ...mine.map((d) => d.endMs - start));
  const met = mine.filter((d) => d.r.sloMet === true);
  const tokens = mine.reduce((x, d) => x + d.r.tokens.length, 0);
  const good = met.reduce((x, d) => x + d.r.tokens.length, 0);
  const ttft = mine.map((d) => d.r.timings.ttftMs ?? Infinity);
  return {
    requests: mine.length,
    attainment: mine.length === 0 ? 0 : met.length / mine.length,
    tokensPerSecond: (tokens * 1000) / spanMs,
    goodTokensPerSecond: (good * 1000) / spanMs,
    ttftP50Ms: pct(ttft, 0.5),
    ttftP99Ms: pct(ttft, 0.99),
  };
}

type System = 'one-device' | 'place-once' | 'online';

/**
 * The placement both two-partition systems start from: the loads before the shift packed largest
 * first onto the less loaded partition (what a planner with exact costs does with them). The
 * engine's own choice at load rests on warm-ups measured on a shared machine and differs between
 * runs; starting both systems from one placement made for the first rates, the bench measures
 * what re-placement does after the shift, not how lucky the load was.
 */
function startPlacement(): Map<string, string> {
  const used = [0, 0];
  const at = new Map<string, string>();
  const order = MODELS.map((m, i) => ({ id: m.id, load: loads.before[i]! })).sort((a, b) => b.load - a.load);
  for (const { id, load } of order) {
    const d = used[0]! <= used[1]! ? 0 : 1;
    used[d] = used[d]! + load;
    at.set(id, `cpu:${d}`);
  }
  return at;
}

async function run(system: System, file: string, rates: Record<'before' | 'after', Record<string, number>>, slos: Record<string, { ttftMs: number; tpotMs: number }>, arrivals: readonly Arrival[]) {
  const events: { atMs: number; event: PlacementEvent }[] = [];
  let t0 = 0;
  const devices: EngineOptions['devices'] = system === 'one-device' ? [{ id: 'cpu', threads: 2 }] : [{ id: 'cpu:0', threads: 1 }, { id: 'cpu:1', threads: 1 }];
  const engine = await Engine.create({
    devices,
    slabBytes: 256 * MiB,
    replanIntervalMs: system === 'online' ? 1000 : 0,
    onPlacement: (event) => events.push({ atMs: performance.now() - t0, event }),
  });
  try {
    for (const m of MODELS) await engine.loadModel({ id: m.id, source: file, precision: m.precision, slo: slos[m.id]!, expectedRate: rates.before[m.id]!, maxContext: PROMPT + OUTPUT + 8 });
    const chosenAtLoad = engine.placement().models.map((m) => ({ model: m.id, devices: m.replicas.map((r) => r.device) }));
    if (system !== 'one-device') {
      for (const [id, to] of startPlacement()) {
        const on = engine.placement().models.find((m) => m.id === id)!.replicas.map((r) => r.device);
        // A model the planner gave two replicas at load keeps them (the JSON shows it).
        if (on.length === 1 && on[0] !== to) await engine.migrate(id, to);
      }
    }
    const initial = engine.placement();
    t0 = performance.now();
    const done: { a: Arrival; r: GenerationResult; endMs: number }[] = [];
    const pending: Promise<void>[] = [];
    for (const a of arrivals) {
      const wait = a.atMs - (performance.now() - t0);
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const run = engine.generate({ model: a.model, tokens: a.tokens, maxTokens: OUTPUT, stopTokens: [] });
      pending.push(run.result.then((r) => void done.push({ a, r, endMs: performance.now() - t0 })));
    }
    await Promise.all(pending);
    const failed = done.filter((d) => d.r.finishReason === 'error' || d.r.finishReason === 'abort');
    if (failed.length > 0) throw new Error(`${system}: ${failed.length} requests ended with ${failed[0]!.r.finishReason}: ${failed[0]!.r.error?.message}`);
    const final = engine.placement();
    return {
      system,
      before: phaseReport(done, 'before'),
      after: phaseReport(done, 'after'),
      placementAtStart: initial.models.map((m) => ({ model: m.id, devices: m.replicas.map((r) => r.device) })),
      placementChosenAtLoad: chosenAtLoad,
      placementAtEnd: final.models.map((m) => ({ model: m.id, devices: m.replicas.map((r) => r.device), measuredRate: m.rate })),
      migrations: events
        .filter((e) => e.event.cause === 'replan')
        .map((e) => ({ atS: e.atMs / 1000, moves: e.event.moves, tookMs: e.event.durationMs ?? 0 })),
    };
  } finally {
    await engine.close();
  }
}

async function main(): Promise<void> {
  const file = await modelFile();
  // Each model alone on one thread: its solo TTFT and TPOT set its SLO (5x, as the demo's) and
  // its request time sets the rates, so "the hot model needs most of a core" holds on any CPU.
  const solo = await Engine.create({ devices: [{ id: 'cpu:0', threads: 1 }], slabBytes: 64 * MiB });
  const slos: Record<string, { ttftMs: number; tpotMs: number }> = {};
  const requestMs: Record<string, number> = {};
  let vocab = 0;
  try {
    for (const m of MODELS) {
      await solo.loadModel({ id: m.id, source: file, precision: m.precision, maxContext: PROMPT + OUTPUT + 8 });
      vocab = solo.tokenizer(m.id).vocabSize;
      const runs: GenerationResult[] = [];
      for (let k = 0; k < 3; k++) runs.push(await solo.generate({ model: m.id, tokens: Array.from({ length: PROMPT }, (_, i) => 3 + ((i * 37 + k) % (vocab - 3))), maxTokens: OUTPUT, stopTokens: [] }).result);
      const med = (f: (r: GenerationResult) => number): number => runs.map(f).sort((a, b) => a - b)[1]!;
      slos[m.id] = { ttftMs: 5 * med((r) => r.timings.ttftMs!), tpotMs: 5 * med((r) => r.timings.tpotMs!) };
      requestMs[m.id] = med((r) => r.timings.e2eMs);
    }
  } finally {
    await solo.close();
  }
  // Loads as shares of one core's solo capacity (`loads`), so "a model wants half a core" holds
  // on any CPU. The toy model's requests take a few ms: at these shares the JS around them would
  // dominate, so the smoke run is lighter.
  const share = (id: string, load: number): number => ((smoke ? 0.2 : 1) * load * 1000) / requestMs[id]!;
  const rates = {
    before: Object.fromEntries(MODELS.map((m, i) => [m.id, share(m.id, loads.before[i]!)])),
    after: Object.fromEntries(MODELS.map((m, i) => [m.id, share(m.id, loads.after[i]!)])),
  };
  const arrivals = trace(rates, vocab);
  console.log(`${arrivals.length} requests over ${(2 * phaseMs) / 1000} s; the shift at ${phaseMs / 1000} s, req/s: ${MODELS.map((m) => `${m.id} ${rates.before[m.id]!.toFixed(2)} -> ${rates.after[m.id]!.toFixed(2)}`).join(', ')}`);
  const systems = [];
  for (const s of ['one-device', 'place-once', 'online'] as const) {
    const r = await run(s, file, rates, slos, arrivals);
    console.log(`${s.padEnd(11)} before: attainment ${(r.before.attainment * 100).toFixed(1)} %, ${r.before.tokensPerSecond.toFixed(0)} tok/s   after: attainment ${(r.after.attainment * 100).toFixed(1)} %, ${r.after.tokensPerSecond.toFixed(0)} tok/s   migrations ${r.migrations.length}`);
    systems.push(r);
  }
  const [, once, online] = systems;
  const ratio = (a: number, b: number): number => (b > 0 ? a / b : a > 0 ? Infinity : 1);
  const attainmentRatio = ratio(online!.after.attainment, once!.after.attainment);
  const throughputRatio = ratio(online!.after.tokensPerSecond, once!.after.tokensPerSecond);
  const result = {
    bench: 'serve-multi',
    command: `npm run bench:serve-multi --${smoke ? ' --smoke' : ` --seconds ${phaseMs / 1000} --layers ${values.layers} --before ${loads.before.join(',')} --after ${loads.after.join(',')}`}`,
    loads,
    loadInCores: { before: loads.before.reduce((a, b) => a + b, 0), after: loads.after.reduce((a, b) => a + b, 0) },
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: availableParallelism() },
    model: smoke ? 'stories260K' : `generated llama-100m shape, ${values.layers} layers, f16`,
    promptTokens: PROMPT,
    outputTokens: OUTPUT,
    phaseSeconds: phaseMs / 1000,
    shift: { atSeconds: phaseMs / 1000, models: MODELS.filter((m, i) => loads.before[i] !== loads.after[i]).map((m) => m.id), rates },
    slos,
    soloRequestMs: requestMs,
    systems,
    targets: {
      onlineVsPlaceOnceAttainmentAfterShift: { target: 1.3, measured: attainmentRatio, met: attainmentRatio >= 1.3 },
      onlineVsPlaceOnceThroughputAfterShift: { target: 1.0, measured: throughputRatio, met: throughputRatio >= 1.0 },
    },
  };
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
  const chart = lineChart(
    'SLO attainment before and after the rate shift',
    'phase (0 = before, 1 = after)',
    'attainment',
    systems.map((s) => ({ name: s.system, points: [[0, s.before.attainment], [1, s.after.attainment]] as const })),
    1,
  );
  writeFileSync(outFile.replace(/\.json$/, '-attainment.svg'), chart);
  console.log(`online vs place-once after the shift: attainment ${attainmentRatio.toFixed(2)}x (target 1.3), throughput ${throughputRatio.toFixed(2)}x (target 1.0)`);
  console.log(`wrote ${outFile}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
