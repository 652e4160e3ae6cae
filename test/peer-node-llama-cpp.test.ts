// node-llama-cpp 3.22.1 (llama.cpp, CPU prebuilt from npm) as an independent peer: on the real
// stories260K GGUF, fineserve's greedy tokens must equal the peer's, prompt by prompt and batched,
// and both must equal the golden continuations. The peer (~725 MB) is not a dependency: the first
// run installs it into the git-ignored .cache/peers through scripts/peer.mjs (npm registry only).
// One thread on both sides (node-llama-cpp's default of 4 is ~30x slower on a 2-core machine).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { FineserveEngine, importPeer, PeerEngine } from '../bench/engine-cpu/engines.js';
import { fixture, goldenCases } from './fixtures.js';

const BOS = 1;
const EOS = 2;
const STOP = [BOS, EOS];

/** Tokens generated before the stop token (the golden file's form). */
function continuation(tokens: readonly number[]): number[] {
  const last = tokens.at(-1);
  return last !== undefined && STOP.includes(last) ? tokens.slice(0, -1) : [...tokens];
}

test('fineserve and node-llama-cpp give the same greedy tokens on stories260K', { timeout: 15 * 60_000 }, async (t) => {
  const gguf = fixture('stories260K.gguf');
  const cases = goldenCases();
  assert.equal(cases.length, 4, 'golden-greedy.json has 4 prompts');

  // Installing is not part of the test's own time: CI installs the peer fresh (minutes).
  const installStart = performance.now();
  const { peer } = await importPeer((line) => t.diagnostic(line));
  const installSeconds = (performance.now() - installStart) / 1000;
  t.diagnostic(
    `peer node-llama-cpp@${peer.version}: ${peer.installed ? `installed in ${installSeconds.toFixed(1)} s` : 'already installed'} (${peer.dir})`,
  );

  const started = performance.now();
  const ours = await FineserveEngine.open(gguf, { threads: 1, kvFormat: 'f32' });
  const theirs = await PeerEngine.open(gguf, { threads: 1, kvFormat: 'f16' });
  try {
    t.diagnostic(`peer: llama.cpp ${String(theirs.describe().llamaCpp)}, ${theirs.llama.buildType} binaries`);
    for (const c of cases) {
      const [mine] = await ours.generate([c.prompt_ids], 64, STOP);
      const [peers] = await theirs.generate([c.prompt_ids], 64, STOP);
      assert.ok(mine !== undefined && peers !== undefined);
      assert.deepEqual(mine, peers, `prompt "${c.prompt}" ${JSON.stringify(c.prompt_ids)}: fineserve vs node-llama-cpp`);
      assert.deepEqual(continuation(peers), c.greedy_ids, `prompt "${c.prompt}": node-llama-cpp vs golden`);
      assert.deepEqual(continuation(mine), c.greedy_ids, `prompt "${c.prompt}": fineserve vs golden`);
    }

    // All four at once: one batch in fineserve, four concurrent sequences of one context in the peer.
    const prompts = cases.map((c) => c.prompt_ids);
    const mine = await ours.generate(prompts, 64, STOP);
    const peers = await theirs.generate(prompts, 64, STOP);
    assert.deepEqual(mine, peers, 'batched: fineserve vs node-llama-cpp');
    cases.forEach((c, i) => assert.deepEqual(continuation(mine[i]!), c.greedy_ids, `batched "${c.prompt}" vs golden`));
  } finally {
    await theirs.close();
    await ours.close();
  }
  t.diagnostic(`compared in ${((performance.now() - started) / 1000).toFixed(1)} s after the install`);
});
