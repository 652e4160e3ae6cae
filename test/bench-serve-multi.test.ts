// bench:serve-multi at its toy size (stories260K, 2 s phases): it must run all three systems and
// write real figures, so the benchmark cannot rot between the runs that measure.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('bench:serve-multi --smoke: three systems, both phases, every figure measured', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fineserve-serve-multi-'));
  try {
    const out = join(dir, 'serve-multi.json');
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/serve-multi.ts', '--smoke', '--out', out], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`.slice(-4000));
    const result = JSON.parse(readFileSync(out, 'utf8')) as {
      systems: { system: string; before: Record<string, number>; after: Record<string, number>; placementAtStart: { devices: string[] }[] }[];
      targets: Record<string, { measured: number }>;
      shift: { rates: { before: Record<string, number>; after: Record<string, number> } };
    };
    assert.deepEqual(
      result.systems.map((s) => s.system),
      ['one-device', 'place-once', 'online'],
    );
    for (const s of result.systems) {
      for (const phase of [s.before, s.after]) {
        assert.ok(phase.requests! > 0, `${s.system}: no requests in a phase`);
        for (const k of ['attainment', 'tokensPerSecond', 'ttftP50Ms']) assert.ok(Number.isFinite(phase[k]), `${s.system}.${k} = ${phase[k]}`);
      }
    }
    assert.ok(result.systems[1]!.placementAtStart.some((m) => m.devices[0] === 'cpu:1'), 'placement used both partitions');
    const { before, after } = result.shift.rates;
    assert.ok(after['f16']! * 5 < before['f16']! && after['w8a8']! > 4 * before['w8a8']!, `the shift (demand moves from f16 to the others) is in the JSON: ${JSON.stringify(result.shift.rates)}`);
    for (const [k, t] of Object.entries(result.targets)) assert.ok(Number.isFinite(t.measured), `${k} measured`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
