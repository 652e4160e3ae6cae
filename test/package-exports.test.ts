// Issue #16 item 14: `require('fineserve')` failed with ERR_PACKAGE_PATH_NOT_EXPORTED while
// TypeScript accepted the CommonJS import. The package is packed as it would be published, checked
// with @arethetypeswrong/cli (every entry point's types and JS agree, ESM and CJS, under node10,
// node16 and bundler resolution), and installed into a scratch app whose CommonJS file requires
// each entry point and serves a request, the addon found inside the installed package.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';

import { fixture } from './fixtures.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; dependencies: Record<string, string> };
const work = mkdtempSync(join(tmpdir(), 'fineserve-pack-'));
const app = join(work, 'app');
let tarball = '';

after(() => rmSync(work, { recursive: true, force: true }));

before(() => {
  // `npm pack` runs `prepare` (build:ts: the ES modules, then the CommonJS copy), so dist/ is current.
  const stdout = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
  // The lifecycle scripts print before the JSON.
  const packed = JSON.parse(stdout.slice(stdout.search(/^\[/m))) as { filename: string }[];
  tarball = join(work, packed[0]!.filename);
  // The app installs the tarball as npm would, without the network: the package unpacked into
  // node_modules/fineserve, its dependencies linked from this checkout's node_modules.
  const installed = join(app, 'node_modules', pkg.name);
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
  for (const dep of Object.keys(pkg.dependencies)) {
    const link = join(app, 'node_modules', dep);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', dep), link, 'dir');
  }
  // The addon the tests run with, placed where a source build of the installed package puts it.
  const addon = process.env.FINESERVE_ADDON || join(ROOT, 'build', 'Release', 'fineserve.node');
  assert.ok(existsSync(addon), `no built addon at ${addon}: run npm run build:native (or set FINESERVE_ADDON)`);
  mkdirSync(join(installed, 'build', 'Release'), { recursive: true });
  copyFileSync(addon, join(installed, 'build', 'Release', 'fineserve.node'));
});

test('@arethetypeswrong/cli finds no problem in the packed package (ESM and CJS, every entry point)', () => {
  const attw = join(ROOT, 'node_modules', '.bin', 'attw');
  const run = spawnSync(attw, [tarball, '--format', 'json'], { encoding: 'utf8', timeout: 120_000 });
  const report = JSON.parse(run.stdout) as { analysis: { problems: unknown[]; entrypoints: Record<string, { resolutions: Record<string, { resolution?: { fileName: string } }> }> } };
  assert.deepEqual(report.analysis.problems, [], run.stdout.slice(0, 2000));
  assert.equal(run.status, 0, run.stderr);
  for (const entry of ['.', './sim', './server']) {
    const cjs = report.analysis.entrypoints[entry]?.resolutions['node16-cjs']?.resolution?.fileName;
    assert.match(cjs ?? '', /\/dist\/cjs\/.*\.d\.ts$/, `${entry} from CommonJS gets the CommonJS declarations`);
  }
});

test('require("fineserve") and its subpaths work from a CommonJS file; the addon and the tokenizer thread are found in the installed package', () => {
  const script = join(app, 'main.cjs');
  writeFileSync(
    script,
    `const fineserve = require('fineserve');
const { createServer } = require('fineserve/server');
const sim = require('fineserve/sim');
(async () => {
  const report = await fineserve.devices();
  const engine = await fineserve.Engine.create({ devices: 'cpu', threads: 1 });
  await engine.loadModel({ id: 'm', source: ${JSON.stringify(fixture('hf'))} });
  const result = await engine.generate({ model: 'm', prompt: 'Lily went', maxTokens: 8 }).result;
  // Past the inline size, tokenizing runs on the worker thread: its file is found beside the CommonJS build.
  const ids = await engine.tokenizer('m').encodeAsync('Lily went home. '.repeat(200));
  await engine.close();
  console.log(JSON.stringify({
    addon: report.addon.path,
    finish: result.finishReason,
    tokens: result.tokens.length,
    ids: ids.length,
    isError: new fineserve.EngineError('ERR_ENGINE_CLOSED', 'x') instanceof fineserve.FineserveError,
    server: typeof createServer,
    sim: Object.keys(sim).length > 0,
  }));
})().catch((err) => { console.error(err); process.exit(1); });
`,
  );
  const env = { ...process.env };
  delete env.FINESERVE_ADDON;
  const run = spawnSync(process.execPath, [script], { cwd: app, env, encoding: 'utf8', timeout: 120_000 });
  assert.equal(run.status, 0, run.stderr);
  const out = JSON.parse(run.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  assert.equal(out.addon, join(app, 'node_modules', pkg.name, 'build', 'Release', 'fineserve.node'));
  assert.deepEqual([out.finish, out.tokens, out.isError, out.server, out.sim], ['length', 8, true, 'function', true]);
  assert.ok((out.ids as number) > 600, `tokenized off the event loop: ${String(out.ids)} ids`);
  // The same package from an ES module gets the ES build, whose tokenizer thread is found too.
  const esmCode = `const m = await import('fineserve');
const ids = await m.Tokenizer.fromFolder(${JSON.stringify(fixture('hf'))}).encodeAsync('Lily went home. '.repeat(200));
console.log(typeof m.Engine, ids.length, import.meta.resolve('fineserve'));`;
  const esm = spawnSync(process.execPath, ['--input-type=module', '-e', esmCode], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
  assert.equal(esm.status, 0, esm.stderr);
  assert.match(esm.stdout, new RegExp(`^function ${String(out.ids)} file:.*/node_modules/fineserve/dist/index\\.js$`, 'm'));
});

test('the CommonJS build finds the package root as the ES build does (the reference profiles beside a checkout)', async () => {
  const cjs = createRequire(import.meta.url)(join(ROOT, 'dist', 'cjs', 'scheduler', 'profiles.js')) as { REPO_ROOT: string };
  const esm = (await import(pathToFileURL(join(ROOT, 'dist', 'scheduler', 'profiles.js')).href)) as { REPO_ROOT: string };
  assert.equal(cjs.REPO_ROOT, esm.REPO_ROOT);
  assert.equal(join(cjs.REPO_ROOT, 'package.json'), join(ROOT, 'package.json'));
});
