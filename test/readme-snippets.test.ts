// Every TypeScript snippet of the README is compiled, and every one that needs no GPU is run, as a
// user would: each `ts` block must follow a `<!-- doc-test: NAME [compile-only] -->` marker (so no
// snippet escapes), is written out as a file importing 'fineserve' (the package itself, through
// its exports and the built dist/), type-checked by tsc, then run in a folder where the paths the
// README names are links to the stories260K fixture. The HTTP snippets need a live server: they
// run in test/readme-server.test.ts.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { fixture, STORIES } from './fixtures.js';

const ROOT = resolve(import.meta.dirname, '..');
const DIR = join(ROOT, '.scratch', 'readme');
const run = promisify(execFile);

interface Snippet {
  readonly name: string;
  readonly compileOnly: boolean;
  readonly code: string;
  readonly line: number;
}

function snippets(): Snippet[] {
  const lines = readFileSync(join(ROOT, 'README.md'), 'utf8').split('\n');
  const out: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```ts') continue;
    const marker = /^<!-- doc-test: ([\w-]+)( compile-only)? -->$/.exec(lines[i - 1] ?? '');
    assert.ok(marker !== null, `README.md line ${i + 1}: a ts block without a <!-- doc-test: NAME --> marker before it`);
    const end = lines.indexOf('```', i + 1);
    out.push({ name: marker[1]!, compileOnly: marker[2] !== undefined, code: lines.slice(i + 1, end).join('\n'), line: i + 1 });
    i = end;
  }
  return out;
}

test('README: every ts snippet type-checks against the published types and runs', async (t) => {
  assert.ok(existsSync(join(ROOT, 'dist', 'index.d.ts')), 'dist/ is missing: run `npm run build:ts` first (npm test does)');
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  // The paths the README names, as links to the fixture (the same formats: a GGUF file, an HF folder).
  symlinkSync(join(STORIES, 'hf'), join(DIR, 'llama-3.2-1b'));
  symlinkSync(STORIES, join(DIR, 'stories260K'));
  symlinkSync(fixture('stories260K.gguf'), join(DIR, 'stories260K.gguf'));
  symlinkSync(fixture('stories260K.gguf'), join(DIR, 'model-f16.gguf'));
  const all = snippets();
  assert.ok(all.length >= 6, `found ${all.length} snippets`);
  assert.equal(new Set(all.map((s) => s.name)).size, all.length, 'snippet names are unique');
  for (const s of all) writeFileSync(join(DIR, `${s.name}.mts`), `${s.code}\nexport {};\n`);
  writeFileSync(
    join(DIR, 'tsconfig.json'),
    JSON.stringify({ extends: '../../tsconfig.json', compilerOptions: { noEmit: true, noUnusedLocals: false }, include: ['*.mts'], exclude: [] }),
  );
  try {
    await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(DIR, 'tsconfig.json')], { cwd: DIR, encoding: 'utf8' });
  } catch (err) {
    assert.fail(`README snippets do not type-check:\n${(err as { stdout?: string }).stdout ?? String(err)}`);
  }
  for (const s of all) {
    if (s.compileOnly || s.name === 'openai-client') continue;
    await t.test(`runs: ${s.name} (README.md line ${s.line})`, async () => {
      try {
        await run(process.execPath, ['--import', 'tsx', `${s.name}.mts`], { cwd: DIR, encoding: 'utf8', timeout: 120_000 });
      } catch (err) {
        assert.fail(`README snippet "${s.name}" failed:\n${(err as { stderr?: string }).stderr ?? String(err)}`);
      }
    });
  }
});
