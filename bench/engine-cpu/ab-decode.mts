// A/B of single-stream decode speed between two addon builds on the same model:
//   node --import tsx bench/engine-cpu/ab-decode.mts MODEL.gguf [ADDON_A.node ADDON_B.node]
// Each build runs in its own process (FINESERVE_ADDON picks it), 1 thread, 64 tokens after a
// 16-token prompt, differential timing (generate 65 minus generate 1), median of 3.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const [model, ...addons] = process.argv.slice(2);
if (model === undefined) {
  console.error('usage: ab-decode.mts MODEL.gguf [ADDON.node ...]');
  process.exit(2);
}
if (process.env['AB_CHILD'] === '1') {
  const { Model, ModelRunner } = await import('../../lib/index.js');
  const runner = ModelRunner.create(await Model.load(model, { checkFinite: false }), { threads: 1 });
  const prompt = Array.from({ length: 16 }, (_, i) => 100 + i);
  await runner.generate([{ prompt, maxTokens: 8, stopTokens: [] }]);
  const rates: number[] = [];
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now();
    await runner.generate([{ prompt, maxTokens: 65, stopTokens: [] }]);
    const t1 = performance.now();
    await runner.generate([{ prompt, maxTokens: 1, stopTokens: [] }]);
    const t2 = performance.now();
    rates.push(64 / ((t1 - t0 - (t2 - t1)) / 1000));
  }
  rates.sort((a, b) => a - b);
  console.log(`${process.env['FINESERVE_ADDON'] ?? 'default addon'}: ${rates[1]!.toFixed(1)} tok/s decode (median of 3)`);
} else {
  for (const addon of addons.length > 0 ? addons : [undefined]) {
    const env = { ...process.env, AB_CHILD: '1', ...(addon === undefined ? {} : { FINESERVE_ADDON: addon }) };
    spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), model], { env, stdio: 'inherit' });
  }
}
