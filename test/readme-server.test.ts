// The README's server snippets, run as a user runs them (a failing command rejects with its stderr): the curl command and the `openai` client
// program, extracted from README.md (the blocks after a `<!-- doc-test: NAME -->` marker) and run
// against a live server on 127.0.0.1 serving the fixture as "demo".
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { CHATML_TEMPLATE } from '../lib/cli/serve.js';
import { Engine } from '../lib/index.js';
import { createServer, type FineserveServer } from '../lib/server/index.js';
import { fixture } from './fixtures.js';

function snippet(name: string): string {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const m = new RegExp(`<!-- doc-test: ${name} -->\\s*\`\`\`\\w*\\n([\\s\\S]*?)\`\`\``).exec(readme);
  assert.ok(m !== null, `README.md has no block marked doc-test: ${name}`);
  return m[1]!;
}

let engine: Engine;
let server: FineserveServer;
let base = '';
before(async () => {
  engine = await Engine.create({ threads: 1, slabBytes: 16 * 2 ** 20 });
  await engine.loadModel({ id: 'demo', source: fixture('stories260K.gguf'), chatTemplate: CHATML_TEMPLATE });
  server = createServer(engine);
  base = await server.listen({ host: '127.0.0.1', port: 0 });
});
after(async () => {
  await server.close();
  await engine.close();
});

test('README: the curl command streams a chat completion', async (t) => {
  if (spawnSync('curl', ['--version']).status !== 0) {
    t.skip('curl is not installed here');
    return;
  }
  const command = snippet('curl').replaceAll('http://127.0.0.1:8000', base);
  // Asynchronously: the server answering it runs in this process.
  const run = await promisify(execFile)('bash', ['-c', command], { encoding: 'utf8', timeout: 60_000 });
  const events = run.stdout.split('\n\n').filter((e) => e.startsWith('data: '));
  assert.equal(events.at(-1), 'data: [DONE]');
  const first = JSON.parse(events[0]!.slice(6)) as { object: string; choices: { delta: { role?: string } }[] };
  assert.equal(first.object, 'chat.completion.chunk');
  assert.equal(first.choices[0]!.delta.role, 'assistant');
});

test('README: the openai client program prints a streamed story', async () => {
  mkdirSync('.scratch', { recursive: true });
  const file = '.scratch/readme-openai-client.mts';
  writeFileSync(file, snippet('openai-client').replaceAll('http://127.0.0.1:8000', base));
  const run = await promisify(execFile)(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', timeout: 60_000 });
  assert.ok(run.stdout.length > 0, 'it printed the story');
});
