// `fineserve demo`, the README's main job, end to end on the stories260K fixture (a short run:
// its numbers are not checked, only that both policies ran every model and reported the SLO
// table, the concurrent sequences, the KV held by format and the ratios).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { fixture } from './fixtures.js';
import { runCli } from './helpers.js';

test('fineserve demo serves four KV formats under both policies and prints the comparison', () => {
  const run = runCli(['demo', '--model', fixture('stories260K.gguf'), '--seconds', '2', '--rate', '20', '--threads', '1', '--context', '256', '--kv-mib', '16']);
  assert.equal(run.status, 0, run.stderr);
  for (const [model, kv] of [['l8-int8', 'int8'], ['l4-f16', 'f16'], ['l4-fp8', 'fp8'], ['l8-int4', 'int4']]) {
    for (const policy of ['fineserve', 'static-fcfs']) {
      // model, KV format, SLO, system, attainment ... concurrent sequences mean/peak at the end
      assert.match(run.stdout, new RegExp(`^${model}\\s+${kv}\\s.*\\s${policy}\\s+\\d+\\.\\d%.*\\s\\d+\\.\\d/\\d+$`, 'm'), `${model} under ${policy}`);
    }
  }
  for (const policy of ['fineserve', 'static-fcfs']) {
    assert.match(run.stdout, new RegExp(`^${policy}\\s+KV held at peak by format \\(MiB\\): int8 [\\d.]+, f16 [\\d.]+, fp8 [\\d.]+, int4 [\\d.]+; [\\d.]+ sequences running on average`, 'm'), `${policy} occupancy by format`);
  }
  assert.match(run.stdout, /^ratio fineserve\/static-fcfs: attainment \S+.*, throughput \S+/m);
  assert.match(run.stderr, /shifting workload: \d+ requests over 2 s at 20 req\/s; the hot model/);
  assert.match(run.stderr, /fineserve \d+\/\d+ requests done/, 'progress lines when stderr is not a terminal');
  assert.match(run.stderr, /loading 100\/100 % done/);
});

test('fineserve demo refuses bad options with usage', () => {
  for (const [args, message] of [
    [['--rate', 'fast'], /--rate must be a positive number/],
    [['--kv-mib', '2'], /--kv-mib must be at least 4/],
    [['--context', '16'], /--context must be at least 64/],
  ] as const) {
    const run = runCli(['demo', ...args]);
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, message);
  }
});
