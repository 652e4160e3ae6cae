import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { ROOT, runCli } from './helpers.js';

test('`fineserve devices` prints the CPU with the SIMD level in use', () => {
  const run = runCli(['devices']);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /^cpu +\S.* · \d+ cores/m);
  assert.match(run.stdout, /SIMD (baseline|avx2|avx512) in use/);
  assert.match(run.stdout, /^(cuda +none: .+|cuda:0 .+)$/m);
  assert.match(run.stdout, /^addon +(local|cuda-prebuild|cpu-prebuild|override) \//m);
});

test('`fineserve devices --json` prints the DeviceReport', () => {
  const run = runCli(['devices', '--json']);
  assert.equal(run.status, 0, run.stderr);
  const report = JSON.parse(run.stdout) as { cpu: { kind: string }; cuda: unknown[]; cudaStatus: object; addon: object };
  assert.equal(report.cpu.kind, 'cpu');
  assert.ok(Array.isArray(report.cuda));
});

test('usage errors exit 2 and name the problem', () => {
  const unknown = runCli(['serve-everything']);
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown command "serve-everything"/);
  const badOption = runCli(['devices', '--yaml']);
  assert.equal(badOption.status, 2);
  assert.match(badOption.stderr, /unknown option --yaml/);
  assert.equal(runCli([]).status, 2);
  assert.equal(runCli(['--help']).status, 0);
});

test('`fineserve --version` prints the package version', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(runCli(['--version']).stdout.trim(), pkg.version);
});
