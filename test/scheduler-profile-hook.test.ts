// The calibration hook: `fineserve profile` runs the Engine on a device and writes the reference
// profile CSV schema; the file loads through the profile parser into a CostModel whose entry for
// the named catalog configuration passes through the measured rows.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { CostModel } from '../lib/scheduler/cost-model.js';
import { loadReferenceProfiles, parseProfileCsv, PROFILE_COLUMNS } from '../lib/scheduler/profiles.js';
import { fixture } from './fixtures.js';
import { runCli } from './helpers.js';

test('`fineserve profile` writes rows a CostModel plans with, labelled as the catalog entry they replace', () => {
  const out = join(mkdtempSync(join(tmpdir(), 'fineserve-profile-')), 'measured.csv');
  const run = runCli(['profile', fixture('stories260K.gguf'), '--out', out, '--device', 'cpu', '--name', 'llama-3.1-8b', '--qformat', 'awq', '--batches', '1,4', '--lengths', '16,48', '--output', '6', '--threads', '1']);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /wrote .*: 4 rows \(llama-3\.1-8b awq TP 1 on cpu/);
  const text = readFileSync(out, 'utf8');
  assert.equal(text.split('\n')[0], PROFILE_COLUMNS.join(','));
  const rows = parseProfileCsv(text, out);
  assert.deepEqual(rows.map((r) => [r.batchSize, r.inputLen]), [[1, 16], [4, 16], [1, 48], [4, 48]]);
  for (const r of rows) {
    assert.ok(r.ttft > 0 && r.tpot > 0 && r.e2e >= r.ttft, `row ${JSON.stringify(r)}`);
    assert.equal(r.outputLen, 6);
    assert.equal(r.seqLen, r.inputLen + 6);
  }
  // The reference's rows of that configuration swapped for the measured ones.
  const measured = new CostModel([...loadReferenceProfiles().filter((r) => !(r.model === 'llama-3.1-8b' && r.qformat === 'awq' && r.tp === 1)), ...rows]);
  const entry = measured.entry('llama-3.1-8b', 'w4a16', 1);
  for (const r of rows) {
    const ttft = entry.latency.ttftMs[entry.latency.lengths.indexOf(r.inputLen)]![entry.latency.batches.indexOf(r.batchSize)]!;
    assert.ok(Math.abs(ttft - r.ttft * 1000) < 1e-6 * Math.max(1, ttft), `TTFT at batch ${r.batchSize}, ${r.inputLen} tokens: ${ttft} ms vs ${r.ttft * 1000}`);
  }
  // A 260K-parameter model on one thread is far faster than an 8B AWQ on an H100's profile.
  assert.ok(entry.latency.ttftMs[0]![0]! < CostModel.reference().entry('llama-3.1-8b', 'w4a16', 1).latency.ttftMs[0]![0]!);
});
