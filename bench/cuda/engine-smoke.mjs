// The whole Engine on a GPU, for scripts/device-run.sh: Node.js, the CUDA addon and dist/ are
// carried there in .device/engine.tar.xz. It generates a model (no download), serves it in three
// precisions on 'cuda:0' and on the CPU, and reports:
//   - per precision, how many greedy tokens the GPU and the CPU engines agree on (fp32 must agree
//     exactly; 16-bit GEMM rounding may move near-ties in the others);
//   - whether a request gives the same tokens alone and inside a busy co-located batch on the GPU
//     (the GEMV/GEMM switch at 9+ tokens changes the rounding of F16 linears);
//   - the co-located run's tok/s and how many models had a step in flight at once.
// Writes $OUT/engine-smoke.json; exits 1 when fp32 disagrees or anything throws.
// FINESERVE_SMOKE_DEVICE=cpu runs the "GPU" half on the CPU, to check this script without a card.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const { Engine, devices, generateModel } = await import(process.env.FINESERVE_DIST ?? '../../dist/index.js');

const out = process.env.OUT ?? tmpdir();
const device = process.env.FINESERVE_SMOKE_DEVICE ?? 'cuda:0';
const report = await devices();
console.log(`addon ${report.addon.variant} (cuda ${report.addon.cuda}), cuda devices: ${report.cuda.map((d) => `${d.id} ${d.name}`).join(', ') || `none (${report.cudaStatus.reason})`}`);
if (device !== 'cpu' && report.cuda.length === 0) {
  console.error('engine-smoke: no CUDA device');
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), 'fineserve-smoke-'));
const shape = process.env.FINESERVE_SMOKE_SHAPE ?? 'llama-100m';
const t0 = performance.now();
const model = await generateModel({ shape, format: 'gguf', out: join(dir, `${shape}.gguf`), dtype: 'f32', layers: 4, vocab: 8192 });
console.log(`generated ${shape} (4 layers, vocab 8192) in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);

const precisions = ['fp32', 'fp16', 'w8a8', 'w4a16-kv4'];
const prompts = Array.from({ length: 8 }, (_, i) => Array.from({ length: 5 + 7 * i }, (_, t) => (t * 131 + i * 977 + 3) % 8192));
const maxTokens = 24;

async function open(where) {
  const engine = await Engine.create({ devices: [where], slabBytes: 512 * 2 ** 20, threads: where === 'cpu' ? undefined : 1 });
  for (const p of precisions) await engine.loadModel({ id: p, source: model.path, precision: p, slo: { ttftMs: 60_000 } });
  return engine;
}

const result = { device, shape, precisions: {}, colocated: {} };
let failed = false;
try {
  const gpu = await open(device);
  const cpu = await open('cpu');
  for (const p of precisions) {
    let same = 0, total = 0, exact = 0;
    for (const tokens of prompts) {
      const a = (await gpu.generate({ model: p, tokens, maxTokens }).result).tokens;
      const b = (await cpu.generate({ model: p, tokens, maxTokens }).result).tokens;
      let k = 0;
      while (k < Math.min(a.length, b.length) && a[k] === b[k]) k++;
      same += k;
      total += b.length;
      exact += k === b.length && a.length === b.length ? 1 : 0;
    }
    result.precisions[p] = { agreeingTokens: same, tokens: total, exactRequests: exact, requests: prompts.length };
    console.log(`${p.padEnd(10)} GPU vs CPU: ${same}/${total} greedy tokens agree before the first difference, ${exact}/${prompts.length} requests identical`);
    if (p === 'fp32' && exact !== prompts.length) failed = true;
  }
  // Lone runs on the GPU, then everything at once across the co-located models.
  const jobs = precisions.flatMap((p) => prompts.map((tokens) => ({ model: p, tokens, maxTokens })));
  const alone = [];
  for (const j of jobs) alone.push((await gpu.generate(j).result).tokens);
  const t1 = performance.now();
  const together = await Promise.all(jobs.map((j) => gpu.generate(j).result));
  const ms = performance.now() - t1;
  const generated = together.reduce((a, r) => a + r.tokens.length, 0);
  const batchInvariant = together.filter((r, i) => r.tokens.join() === alone[i].join()).length;
  const stats = gpu.stats().devices[0];
  result.colocated = { requests: jobs.length, ms, tokPerS: (generated / ms) * 1e3, sameAsAlone: batchInvariant, sharing: stats.sharing, peakConcurrentSteps: stats.peakConcurrentSteps };
  console.log(`co-located: ${jobs.length} requests over ${precisions.length} models in ${ms.toFixed(0)} ms (${result.colocated.tokPerS.toFixed(0)} tok/s), ${batchInvariant}/${jobs.length} equal to their lone run, sharing ${stats.sharing}, peak ${stats.peakConcurrentSteps} steps in flight`);
  await Promise.all([gpu.close(), cpu.close()]);
} catch (err) {
  result.error = String(err?.stack ?? err);
  console.error(err);
  failed = true;
}
writeFileSync(join(out, 'engine-smoke.json'), JSON.stringify(result, null, 1) + '\n');
process.exit(failed ? 1 : 0);
