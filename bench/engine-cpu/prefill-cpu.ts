/**
 * One engine (fineserve, 1 thread, f16 KV), timed by process CPU time, which the other load of a
 * shared VM barely moves (wall time there swings 2x between runs): prefill of one prompt, or 64
 * decode tokens after prompts. Also a target for `perf record` (attention's share of a prefill).
 *
 *   node --import tsx bench/engine-cpu/prefill-cpu.ts <gguf> <tokens> <rounds>
 *   node --import tsx bench/engine-cpu/prefill-cpu.ts <gguf> <tokens> <rounds> decode <seqs>
 * @module
 */
import { FineserveEngine } from './engines.js';
import { makePrompts, timeGenerate } from './measure.js';
const [path, n, rounds] = [process.argv[2]!, Number(process.argv[3] ?? 1024), Number(process.argv[4] ?? 3)];
const decode = process.argv[5] === 'decode';
const seqs = Number(process.argv[6] ?? 1);
const engine = await FineserveEngine.open(path, { threads: 1, kvFormat: 'f16' });
const prompts = makePrompts(decode ? seqs : 1, n, engine.model.config.vocabSize, 1);
const cpuTime = async (maxTokens: number) => {
  const cpu0 = process.cpuUsage();
  const { seconds } = await timeGenerate(engine, prompts, maxTokens);
  const cpu = process.cpuUsage(cpu0);
  return { wall: seconds, cpu: (cpu.user + cpu.system) / 1e6 };
};
for (let r = 0; r < rounds; r++) {
  if (!decode) {
    const t = await cpuTime(1);
    console.log(`prefill ${n}: ${(n / t.wall).toFixed(1)} tok/s wall, ${(n / t.cpu).toFixed(1)} tok/s of process CPU time`);
  } else {
    const a = await cpuTime(1);
    const b = await cpuTime(65);
    console.log(`decode x${seqs} after ${n}: ${((64 * seqs) / (b.cpu - a.cpu)).toFixed(1)} tok/s of process CPU time`);
  }
}
await engine.close();
