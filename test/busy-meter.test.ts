// The measured busy share of a replica: what re-planning trusts over the latency model.
import assert from 'node:assert/strict';
import test from 'node:test';

import { BusyMeter } from '../lib/engine/busy-meter.js';

test('a replica busy 4 ms of every 10 reads 0.4; idle, its share decays; a young meter is not read low', () => {
  const m = new BusyMeter(0, 1_000);
  for (let t = 10; t <= 5_000; t += 10) m.add(t, 4);
  assert.ok(Math.abs(m.share(5_000) - 0.4) < 0.01, String(m.share(5_000)));
  assert.ok(m.settled(5_000));
  assert.ok(Math.abs(m.share(6_000) - 0.4 * Math.exp(-1)) < 0.01, 'one time constant idle');
  const young = new BusyMeter(0, 1_000);
  for (let t = 10; t <= 200; t += 10) young.add(t, 4);
  assert.ok(!young.settled(200));
  assert.ok(Math.abs(young.share(200) - 0.4) < 0.05, `after a fifth of τ: ${young.share(200)}`);
  assert.equal(new BusyMeter(0).share(10_000), 0);
});
