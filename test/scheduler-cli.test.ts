import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { referenceProfilePath } from '../lib/scheduler/profiles.js';
import { runCli } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'fineserve-plan-'));
const modelsPath = join(dir, 'models.json');
const devicesPath = join(dir, 'devices.json');
writeFileSync(modelsPath, JSON.stringify([
  { id: 'chat-fp16', family: 'llama-3.1-8b', precision: 'fp16', rate: 3 },
  { id: 'chat-int4', family: 'llama-3.1-8b', precision: 'w4a16', rate: 2 },
  { id: 'qwen', family: 'qwen-3-32b', precision: 'fp8-kv8', rate: 1 },
]));
writeFileSync(devicesPath, JSON.stringify({ devices: [{ id: 'gpu0', memoryBytes: 80e9 }, { id: 'gpu1', memoryBytes: 80e9 }] }));

test('`fineserve plan` prints every model on devices, and --json the plan object', () => {
  const run = runCli(['plan', modelsPath, devicesPath]);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /^plan fineserve v1/m);
  for (const id of ['chat-fp16', 'chat-int4', 'qwen']) assert.match(run.stdout, new RegExp(`^  ${id}#0 +on gpu\\d`, 'm'));
  assert.match(run.stdout, /qwen#0 +on gpu0\+gpu1 tp2/);
  const json = runCli(['plan', modelsPath, devicesPath, '--policy', 'reference', '--json']);
  assert.equal(json.status, 0, json.stderr);
  const plan = JSON.parse(json.stdout) as { policy: string; placements: unknown[] };
  assert.equal(plan.policy, 'reference');
  assert.equal(plan.placements.length, 3);
});

test('`fineserve plan` names the file, field and value of bad input', () => {
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify([{ id: 'x', family: 'llama-3.1-8b', precision: 'fp16', rate: 'lots' }]));
  const run = runCli(['plan', bad, devicesPath]);
  assert.equal(run.status, 1);
  assert.match(run.stderr, /models\[0\]: rate: must be a finite number > ?=? ?0, got "lots"/);
  assert.equal(runCli(['plan', modelsPath]).status, 2);
});

test('#16 item 15: every subcommand answers --help, bad options are one line and exit 2, plan takes --profiles', () => {
  for (const command of ['plan', 'profile', 'serve', 'quantize', 'generate', 'demo', 'devices']) {
    const help = runCli([command, '--help']);
    assert.equal(help.status, 0, `${command} --help: ${help.stderr}`);
    assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'));
  }
  const bad = runCli(['profile', '--mps', 'x']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^fineserve profile: Unknown option '--mps'/);
  assert.doesNotMatch(bad.stderr, /\n\s+at /, 'no stack trace');
  const type = runCli(['quantize', 'a.gguf', 'b.gguf', '--type', 'q5_k']);
  assert.equal(type.status, 2);
  assert.match(type.stderr, /--type q5_k is not a type it writes/);
  const vocab = runCli(['generate', '--shape', 'tiny', '--format', 'gguf', '--out', join(dir, 'x.gguf'), '--vocab', '0']);
  assert.equal(vocab.status, 2);
  assert.match(vocab.stderr, /--vocab must be at least 1, got 0/);
  // An installed package has no ../shared: the costs come from a profile CSV given by path.
  const csv = join(dir, 'profiles.csv');
  writeFileSync(csv, readFileSync(referenceProfilePath('apex')));
  const withProfiles = runCli(['plan', modelsPath, devicesPath, '--profiles', csv]);
  assert.equal(withProfiles.status, 0, withProfiles.stderr);
  assert.equal(withProfiles.stdout, runCli(['plan', modelsPath, devicesPath]).stdout);
  const missing = runCli(['plan', modelsPath, devicesPath, '--profiles', join(dir, 'none.csv')]);
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /none\.csv/);
});
