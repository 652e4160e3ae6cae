// `fineserve demo`, the README's main job, end to end on the stories260K fixture (a short run:
// its numbers are not checked, only that both policies ran every model and reported).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { fixture } from './fixtures.js';
import { runCli } from './helpers.js';

test('fineserve demo serves three precisions under both policies and prints the comparison', () => {
  const run = runCli(['demo', '--model', fixture('stories260K.gguf'), '--seconds', '2', '--rate', '20', '--threads', '1']);
  assert.equal(run.status, 0, run.stderr);
  for (const precision of ['fp16', 'w8a8', 'w4a16-kv4']) {
    for (const policy of ['fineserve', 'static-fcfs']) {
      assert.match(run.stdout, new RegExp(`^${precision}\\s.*\\s${policy}\\s+\\d+\\.\\d%`, 'm'), `${precision} under ${policy}`);
    }
  }
  assert.match(run.stdout, /^ratio fineserve\/static-fcfs: attainment/m);
  assert.match(run.stdout, /^slab at peak \(fineserve\): held .*f16/m);
  assert.match(run.stderr, /Poisson workload: \d+ requests over 2 s at 20 req\/s/);
  assert.match(run.stderr, /fineserve\s+\d+\/\d+ requests done/, 'progress lines when stderr is not a terminal');
});

test('fineserve demo refuses bad options with usage', () => {
  const run = runCli(['demo', '--rate', 'fast']);
  assert.equal(run.status, 2);
  assert.match(run.stderr, /--rate must be a positive number/);
});
