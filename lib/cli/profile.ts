/**
 * `fineserve profile`: the calibration hook. Runs the serving Engine itself on one device (the CPU
 * or a GPU, `--device cuda:0`) over a batch × prompt-length grid and writes the rows in the
 * reference profile CSV schema (PROFILE_COLUMNS), so `new CostModel(parseProfileCsv(...))` and
 * `fineserve plan --profiles FILE` plan and simulate with measured step times instead of the
 * reference's H100 rows. Name the rows after a catalog entry (`--name llama-3.1-8b --qformat awq`)
 * for them to stand in for that entry's.
 * @module
 */
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';

import { PlanError } from '../scheduler/errors.js';
import { formatProfileCsv, type ProfileRow } from '../scheduler/profiles.js';

export const PROFILE_USAGE = `  profile MODEL --out FILE.csv [--device cpu|cuda:N] [--precision P] [--name MODEL_NAME] [--qformat Q]
          [--tp N] [--batches 1,2,4,8,16,32] [--lengths 256,512] [--output 32] [--threads N]
                     run the Engine on one device over a batch x prompt-length grid and write the
                     reference profile CSV schema (TTFT: the batch's slowest first token; TPOT: its
                     mean per output token); --name/--qformat/--tp label the rows (default: the
                     file's name, the served precision, 1), a catalog family and qformat (e.g.
                     llama-3.1-8b awq) make them stand in for that entry's costs`;

function intList(text: string | undefined, fallback: number[], flag: string): number[] {
  if (text === undefined) return fallback;
  const list = text.split(',').map((t) => Number(t));
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1)) throw new PlanError('ERR_PLAN_INPUT', flag, 'value', `must be positive integers separated by commas, got "${text}"`);
  return list;
}

/** Runs the command; returns the exit code. */
export async function profileCommand(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args],
    options: {
      out: { type: 'string' },
      device: { type: 'string' },
      precision: { type: 'string' },
      name: { type: 'string' },
      qformat: { type: 'string' },
      tp: { type: 'string' },
      batches: { type: 'string' },
      lengths: { type: 'string' },
      output: { type: 'string' },
      threads: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1 || values.out === undefined) {
    console.error(`fineserve profile: expected MODEL and --out FILE.csv\n\nusage:\n${PROFILE_USAGE}`);
    return 2;
  }
  const batches = intList(values.batches, [1, 2, 4, 8, 16, 32], '--batches');
  const lengths = intList(values.lengths, [256, 512], '--lengths');
  const output = intList(values.output, [32], '--output')[0]!;
  const [tp] = intList(values.tp, [1], '--tp');
  const threads = values.threads === undefined ? undefined : intList(values.threads, [], '--threads')[0];
  const maxLen = Math.max(...lengths);
  const maxBatch = Math.max(...batches);
  // The engine is loaded only for this command: `plan` must work without the native addon.
  const { Engine } = await import('../engine.js');
  const engine = await Engine.create({ devices: [values.device ?? 'cpu'], ...(threads !== undefined && { threads }) });
  try {
    const info = await engine.loadModel({
      id: 'profile',
      source: positionals[0]!,
      ...(values.precision !== undefined && { precision: values.precision as never }),
      maxContext: maxLen + output + 16,
      maxBatch,
      // A whole batch of prompts is one prefill, as the reference profiles time it.
      maxBatchTokens: maxBatch * maxLen,
    });
    const name = values.name ?? basename(positionals[0]!).replace(/\.gguf$/, '');
    const qformat = values.qformat ?? info.precisionName;
    // The batch's requests are submitted together so they are admitted as one batch; the ids
    // stay below 256 so any tokenizer has them and avoid the usual special ids 0-2.
    const run = async (batch: number, len: number, maxTokens: number) => {
      const tokens = Array.from({ length: len }, (_, i) => 3 + ((i * 7919) % 250));
      return Promise.all(Array.from({ length: batch }, () => engine.generate({ model: 'profile', tokens, maxTokens, stopTokens: [] }).result));
    };
    await run(1, Math.min(...lengths), 2);
    const rows: ProfileRow[] = [];
    for (const len of lengths) {
      for (const batch of batches) {
        // The shape once unmeasured, then every figure of the row from one run: from two, a hiccup
        // in the first could put TTFT above the second's whole e2e (seen on a busy CI machine).
        await run(batch, len, 1);
        const full = await run(batch, len, output);
        const ttft = Math.max(...full.map((r) => r.timings.ttftMs ?? r.timings.e2eMs)) / 1000;
        const tpots = full.map((r) => r.timings.tpotMs).filter((t): t is number => t !== undefined);
        const tpot = tpots.length > 0 ? tpots.reduce((a, b) => a + b, 0) / tpots.length / 1000 : 0;
        const e2e = Math.max(...full.map((r) => r.timings.e2eMs)) / 1000;
        rows.push({ model: name, qformat, tp: tp!, mpsPercentage: 100, batchSize: batch, inputLen: len, outputLen: output, seqLen: len + output, prefillTime: ttft, decodeTime: tpot * (output - 1), ttft, tpot, e2e });
      }
    }
    writeFileSync(values.out, formatProfileCsv(rows));
    console.log(`wrote ${values.out}: ${rows.length} rows (${name} ${qformat} TP ${tp} on ${info.device}, batches ${batches.join(',')}, lengths ${lengths.join(',')}, output ${output})`);
    return 0;
  } finally {
    await engine.close();
  }
}
