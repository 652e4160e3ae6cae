// bench/serve-memory/batch-scaling-ab.ts (the W8A8 GEMM's before/after of decode step vs batch)
// runs once at a toy size, so it cannot rot: exits 0 and writes both sides' step times.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'fineserve-batch-ab-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

test('batch-scaling-ab --smoke: both sides measured at every batch', () => {
  const out = join(scratch, 'ab.json');
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/serve-memory/batch-scaling-ab.ts', '--smoke', '--out', out], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `exited ${r.status}:\n${`${r.stdout}${r.stderr}`.slice(-4000)}`);
  const j = JSON.parse(readFileSync(out, 'utf8')) as { summary: { batch: number; beforeStepMs: number; afterStepMs: number }[]; setup: { precision: string } };
  assert.equal(j.setup.precision, 'w8a8');
  assert.deepEqual(j.summary.map((s) => s.batch), [1, 2]);
  for (const s of j.summary) {
    assert.ok(Number.isFinite(s.beforeStepMs) && s.beforeStepMs > 0, `before B${s.batch}: ${s.beforeStepMs}`);
    assert.ok(Number.isFinite(s.afterStepMs) && s.afterStepMs > 0, `after B${s.batch}: ${s.afterStepMs}`);
  }
});
