// Issue #16 item 1: a model file truncated in place (to half, to nothing) while it is loaded and
// served. The weights used to be read from a mapping of the file, and the first read past its
// new end killed the process with SIGBUS. Each case runs in a child process (this file, run with
// FINESERVE_TRUNCATION_CASE set), so a crash fails the test instead of killing the runner.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Model, ModelRunner, type PrecisionName } from '../lib/index.js';
import { fixture, goldenCases } from './fixtures.js';

interface Case {
  readonly format: 'gguf' | 'hf';
  readonly precision: PrecisionName;
}

const CASES: readonly Case[] = [
  { format: 'gguf', precision: 'fp32' },
  { format: 'gguf', precision: 'w8a8' },
  { format: 'hf', precision: 'fp32' },
  { format: 'hf', precision: 'w8a8' },
];

interface ChildResult {
  readonly before: number[][];
  readonly afterHalf: number[][];
  readonly afterEmpty: number[][];
}

/** In the child: copy the fixture to a temp folder, load, generate, truncate, generate again. */
async function runCase(c: Case): Promise<ChildResult> {
  const dir = mkdtempSync(join(tmpdir(), 'fineserve-truncate-'));
  try {
    let source: string;
    let file: string;
    if (c.format === 'gguf') {
      source = file = join(dir, 'stories260K.gguf');
      copyFileSync(fixture('stories260K.gguf'), file);
    } else {
      source = join(dir, 'hf');
      cpSync(fixture('hf'), source, { recursive: true });
      file = join(source, 'model.safetensors');
    }
    const runner = ModelRunner.create(await Model.load(source, { precision: c.precision }), { threads: 1 });
    const generate = async (): Promise<number[][]> => {
      const outs = await runner.generate(goldenCases().map((g) => ({ prompt: g.prompt_ids, maxTokens: 24, stopTokens: [1, 2] })));
      return outs.map((o) => o.tokens);
    };
    const before = await generate();
    truncateSync(file, Math.floor(statSync(file).size / 2));
    const afterHalf = await generate();
    truncateSync(file, 0);
    const afterEmpty = await generate();
    runner.dispose();
    return { before, afterHalf, afterEmpty };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const CHILD = process.env.FINESERVE_TRUNCATION_CASE;
if (CHILD !== undefined) {
  const result = await runCase(JSON.parse(CHILD) as Case);
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
} else {
  for (const c of CASES) {
    test(`${c.format} ${c.precision}: truncating the served model's file to half and to 0 changes no output and does not crash`, () => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
        env: { ...process.env, FINESERVE_TRUNCATION_CASE: JSON.stringify(c) },
        encoding: 'utf8',
        timeout: 120_000,
      });
      assert.equal(r.signal, null, `the child died of ${r.signal}: ${r.stderr}`);
      assert.equal(r.status, 0, r.stderr);
      const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
      assert.ok(line, `no result from the child: ${r.stdout}${r.stderr}`);
      const result = JSON.parse(line.slice('RESULT '.length)) as ChildResult;
      assert.deepEqual(result.afterHalf, result.before, 'outputs after truncating to half');
      assert.deepEqual(result.afterEmpty, result.before, 'outputs after truncating to 0 bytes');
      if (c.precision === 'fp32') {
        // Independently: the fp32 model's greedy continuations are the fixture's golden ones.
        goldenCases().forEach((g, i) => {
          const tokens = result.before[i]!;
          const generated = tokens.at(-1) === 1 || tokens.at(-1) === 2 ? tokens.slice(0, -1) : tokens;
          assert.deepEqual(generated, g.greedy_ids.slice(0, generated.length), `golden case ${i}`);
        });
      }
    });
  }
}
