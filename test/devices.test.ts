// devices() is checked against what the OS says independently of the addon: /proc/cpuinfo flags
// for SIMD support, os.availableParallelism() for usable cores, the driver files for CUDA.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { test } from 'node:test';

import { devices } from '../lib/index.js';
import { nvidiaDriverPresent } from '../lib/native/loader.js';
import { runCli } from './helpers.js';

function cpuFlags(): Set<string> {
  const line = readFileSync('/proc/cpuinfo', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('flags'));
  return new Set(line?.split(':')[1]?.trim().split(/\s+/) ?? []);
}

test('the CPU matches what the OS reports', async () => {
  const { cpu } = await devices();
  assert.equal(cpu.kind, 'cpu');
  assert.ok(cpu.model.length > 0, 'model name is empty');
  assert.equal(cpu.logicalCores, availableParallelism());
  assert.ok(cpu.physicalCores >= 0 && cpu.physicalCores <= cpu.logicalCores);
  assert.ok(Math.abs(cpu.memoryBytes - totalmem()) / totalmem() < 0.02, `${cpu.memoryBytes} vs ${totalmem()}`);
});

test('the SIMD levels supported agree with /proc/cpuinfo, and the best one is in use', async (t) => {
  if (process.arch !== 'x64') return t.skip('x86-64 only');
  const { cpu, addon } = await devices();
  const flags = cpuFlags();
  const has = (...names: string[]) => names.every((n) => flags.has(n));
  const expected = ['baseline'];
  if (addon.simdCompiled.includes('avx2') && has('avx2', 'fma', 'f16c')) expected.push('avx2');
  if (addon.simdCompiled.includes('avx512') && has('avx512f', 'avx512bw', 'avx512vl', 'avx512dq')) {
    expected.push('avx512');
  }
  assert.deepEqual(cpu.simdSupported, expected);
  assert.deepEqual(addon.simdCompiled, ['baseline', 'avx2', 'avx512']);
  if (process.env['FINESERVE_SIMD'] === undefined) {
    assert.equal(cpu.simd, expected.at(-1));
    assert.equal(cpu.simdNote, undefined);
  }
});

test('CUDA: devices when a driver is present, otherwise none and a reason', async () => {
  const { cuda, cudaStatus, addon } = await devices();
  assert.equal(cudaStatus.compiled, addon.cuda);
  assert.equal(cudaStatus.available, cuda.length > 0);
  if (addon.cuda) assert.match(cudaStatus.runtimeVersion ?? '', /^\d+\.\d$/);
  else assert.equal(cudaStatus.runtimeVersion, null);
  if (!nvidiaDriverPresent() || !addon.cuda) {
    assert.equal(cuda.length, 0);
    assert.ok((cudaStatus.reason ?? '').length > 10, 'an empty CUDA list must say why');
    if (!addon.cuda) assert.match(cudaStatus.reason ?? '', /built without CUDA/);
    else assert.match(cudaStatus.reason ?? '', /driver/);
  }
  for (const d of cuda) {
    assert.equal(d.id, `cuda:${d.index}`);
    assert.ok(d.memoryBytes > 0 && d.smCount > 0);
    assert.match(d.computeCapability, /^\d+\.\d+$/);
  }
});

test('FINESERVE_SIMD lowers the kernels in use and explains a bad value', { skip: process.arch !== 'x64' }, () => {
  const lowered = runCli(['devices', '--json'], { FINESERVE_SIMD: 'baseline' });
  assert.equal(lowered.status, 0, lowered.stderr);
  const report = JSON.parse(lowered.stdout) as { cpu: { simd: string; simdSupported: string[]; simdNote?: string } };
  assert.equal(report.cpu.simd, 'baseline');
  if (report.cpu.simdSupported.length > 1) assert.match(report.cpu.simdNote ?? '', /lowered by FINESERVE_SIMD/);

  const bogus = runCli(['devices', '--json'], { FINESERVE_SIMD: 'avx9000' });
  assert.equal(bogus.status, 0, bogus.stderr);
  const best = JSON.parse(bogus.stdout) as { cpu: { simd: string; simdSupported: string[]; simdNote?: string } };
  assert.equal(best.cpu.simd, best.cpu.simdSupported.at(-1));
  assert.match(best.cpu.simdNote ?? '', /avx9000/);
});
