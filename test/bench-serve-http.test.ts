// bench/serve-http.ts runs once at a tiny size (--smoke) so it cannot rot: it must exit 0 and
// write every phase with real figures.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { promisify } from 'node:util';

test('bench:serve-http --smoke measures every phase and exits 0', async () => {
  await promisify(execFile)(process.execPath, ['--import', 'tsx', 'bench/serve-http.ts', '--smoke'], { encoding: 'utf8', timeout: 120_000 });
  const report = JSON.parse(readFileSync('build/serve-http-smoke.json', 'utf8')) as {
    phases: Record<string, { tokens: number; tokensPerSecond: number }>;
    overhead: Record<string, number>;
    failures: string[];
  };
  assert.deepEqual(report.failures, []);
  for (const name of ['inProcess', 'http', 'autocannon']) {
    assert.ok(report.phases[name]!.tokens > 0, `${name} generated tokens`);
    assert.ok(Number.isFinite(report.phases[name]!.tokensPerSecond));
  }
  assert.ok(Number.isFinite(report.overhead['addedTtftP50Ms']));
});
