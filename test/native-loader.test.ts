// The loader's order and its one error, on scratch package roots holding copies of the real addon
// (and corrupt files), so every branch runs without touching the project's own build/.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';

import { NativeLoadError } from '../lib/errors.js';
import { loadNative, loadNativeFrom, nativeCandidates } from '../lib/native/loader.js';
import { runCli } from './helpers.js';

const realAddon = loadNative().path;
const scratch = mkdtempSync(join(tmpdir(), 'fineserve-loader-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const tuple = `${process.platform}-${process.arch}`;
let rootCount = 0;

/** A package root with the given files: 'addon' copies the real addon, 'corrupt' writes junk. */
function makeRoot(files: Record<string, 'addon' | 'corrupt'>): string {
  const root = join(scratch, `root${rootCount++}`);
  mkdirSync(root);
  for (const [rel, kind] of Object.entries(files)) {
    const path = join(root, rel);
    mkdirSync(dirname(path), { recursive: true });
    if (kind === 'addon') copyFileSync(realAddon, path);
    else writeFileSync(path, 'this is not an ELF shared object\n');
  }
  return root;
}

const LOCAL = 'build/Release/fineserve.node';
const CPU = `prebuilds/${tuple}/fineserve.node`;
const CUDA = `prebuilds/${tuple}/fineserve.cuda.node`;

test('candidates come in order: local build, CUDA prebuild, CPU prebuild', () => {
  const root = makeRoot({ [CPU]: 'addon', [CUDA]: 'addon' });
  const withGpu = nativeCandidates({ root, gpuPresent: true });
  assert.deepEqual(withGpu.map((c) => c.variant), ['local', 'cuda-prebuild', 'cpu-prebuild']);
  assert.deepEqual(withGpu.map((c) => c.path), [join(root, LOCAL), join(root, CUDA), join(root, CPU)]);
  assert.equal(withGpu[1]?.skip, undefined);
  const noGpu = nativeCandidates({ root, gpuPresent: false });
  assert.match(noGpu[1]?.skip ?? '', /no NVIDIA driver/);
});

test('with no build output and no prebuilds, one error lists every candidate and why', () => {
  const root = makeRoot({});
  let caught: unknown;
  try {
    loadNativeFrom({ root, gpuPresent: true });
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof NativeLoadError, 'expected a NativeLoadError');
  assert.equal(caught.code, 'ERR_NATIVE_LOAD');
  assert.deepEqual(caught.attempts.map((a) => a.variant), ['local', 'cuda-prebuild', 'cpu-prebuild']);
  assert.equal(caught.attempts[0]?.reason, 'not found');
  assert.match(caught.attempts[1]?.reason ?? '', /no CUDA prebuild/);
  assert.match(caught.attempts[2]?.reason ?? '', /no CPU prebuild/);
  for (const a of caught.attempts) assert.ok(caught.message.includes(a.path), `message names ${a.path}`);
  assert.match(caught.message, /npm run build:native/);
});

test('a CPU prebuild is used when there is no local build, and it works', async () => {
  const root = makeRoot({ [CPU]: 'addon' });
  const loaded = loadNativeFrom({ root, gpuPresent: false });
  assert.equal(loaded.variant, 'cpu-prebuild');
  assert.equal(loaded.path, join(root, CPU));
  assert.deepEqual(loaded.skipped.map((s) => s.variant), ['local', 'cuda-prebuild']);
  const report = await loaded.binding.devices();
  assert.ok(report.cpu.logicalCores >= 1);
});

test('the CUDA prebuild is preferred when a driver is present, and skipped when not', () => {
  const root = makeRoot({ [CPU]: 'addon', [CUDA]: 'addon' });
  assert.equal(loadNativeFrom({ root, gpuPresent: true }).variant, 'cuda-prebuild');
  const cpu = loadNativeFrom({ root, gpuPresent: false });
  assert.equal(cpu.variant, 'cpu-prebuild');
  assert.match(cpu.skipped[1]?.reason ?? '', /no NVIDIA driver/);
});

test('a local build that fails to load falls through, with the dlopen error kept', () => {
  const root = makeRoot({ [LOCAL]: 'corrupt', [CUDA]: 'corrupt', [CPU]: 'addon' });
  const loaded = loadNativeFrom({ root, gpuPresent: true });
  assert.equal(loaded.variant, 'cpu-prebuild');
  assert.match(loaded.skipped[0]?.reason ?? '', /ELF|invalid|too short/i);
  assert.match(loaded.skipped[1]?.reason ?? '', /ELF|invalid|too short/i);
});

test('a local build is preferred over prebuilds', () => {
  const root = makeRoot({ [LOCAL]: 'addon', [CPU]: 'addon' });
  const loaded = loadNativeFrom({ root, gpuPresent: false });
  assert.equal(loaded.variant, 'local');
  assert.equal(loaded.skipped.length, 0);
});

test('FINESERVE_ADDON names the only candidate', () => {
  const root = makeRoot({ [CPU]: 'addon' });
  assert.throws(
    () => loadNativeFrom({ root, gpuPresent: false, override: join(root, 'missing.node') }),
    (err: unknown) => err instanceof NativeLoadError && err.attempts.length === 1 && err.attempts[0]?.variant === 'override',
  );
  assert.equal(loadNativeFrom({ root, gpuPresent: false, override: join(root, CPU) }).variant, 'override');
});

test('the CLI prints the loader error and exits 1 when no addon loads', () => {
  const run = runCli(['devices'], { FINESERVE_ADDON: join(scratch, 'nowhere', 'fineserve.node') });
  assert.equal(run.status, 1);
  assert.match(run.stderr, /could not load its native addon/);
  assert.match(run.stderr, /nowhere/);
});
