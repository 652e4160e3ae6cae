#!/usr/bin/env node
// The peer engine, node-llama-cpp, pinned: the independent reference of test/peer-node-llama-cpp.test.ts
// and the CPU speed anchor of bench/engine-cpu.ts. It is ~725 MB installed (llama.cpp prebuilt
// binaries for every platform variant npm picks), so it is never a dependency of fineserve: it
// installs on demand into the git-ignored .cache/peers/, and only when that exact version is not
// already there. It needs the npm registry and nothing else (its CPU binaries ship inside npm
// packages; the postinstall step is told not to download or build llama.cpp).
//
//   node scripts/peer.mjs        install if needed, print where it is and how it is imported
//
// Importers: `const { importPath } = await ensurePeer(); const llama = await import(importPath);`
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, lstatSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const PEER_NAME = 'node-llama-cpp';
export const PEER_VERSION = '3.22.1';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The install prefix (git-ignored). */
export const PEER_PREFIX = join(ROOT, '.cache', 'peers');
/** The installed package's folder. */
export const PEER_DIR = join(PEER_PREFIX, 'node_modules', PEER_NAME);

/** The version installed under .cache/peers, or undefined. */
export function installedPeerVersion() {
  try {
    return JSON.parse(readFileSync(join(PEER_DIR, 'package.json'), 'utf8')).version;
  } catch {
    return undefined;
  }
}

/** A file: URL for `import()` of the installed package's ESM entry (no install). */
export function peerImportPath() {
  const pkg = JSON.parse(readFileSync(join(PEER_DIR, 'package.json'), 'utf8'));
  let entry = pkg.exports?.['.'] ?? pkg.exports ?? pkg.module ?? pkg.main ?? 'index.js';
  while (typeof entry === 'object' && entry !== null) entry = entry.import ?? entry.node ?? entry.default;
  if (typeof entry !== 'string') throw new Error(`${PEER_DIR}/package.json: cannot find its ESM entry`);
  return pathToFileURL(join(PEER_DIR, entry)).href;
}

/** Bytes under a folder (symlinks not followed). */
export function folderBytes(dir) {
  let total = 0;
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop();
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else total += lstatSync(p).size;
    }
  }
  return total;
}

function run(cmd, args, env, log) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const take = (chunk) => {
      output += chunk;
      if (output.length > 200_000) output = output.slice(-100_000);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolvePromise(output);
      else {
        log(output.slice(-4000));
        reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}); see its output above`));
      }
    });
  });
}

/**
 * Installs node-llama-cpp@PEER_VERSION into .cache/peers unless that version is already there.
 * Resolves to { importPath, dir, version, installed (true when this call installed it), seconds }.
 */
export async function ensurePeer({ log = (line) => console.error(line) } = {}) {
  const have = installedPeerVersion();
  if (have === PEER_VERSION && existsSync(join(PEER_DIR, 'dist'))) {
    return { importPath: peerImportPath(), dir: PEER_DIR, version: have, installed: false, seconds: 0 };
  }
  mkdirSync(PEER_PREFIX, { recursive: true });
  log(
    `peer: installing ${PEER_NAME}@${PEER_VERSION} into ${PEER_PREFIX}` +
      (have === undefined ? '' : ` (found ${have})`) +
      ' from the npm registry (about 725 MB, a few minutes)...',
  );
  const started = performance.now();
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const env = {
    ...process.env,
    // Its postinstall must only use the prebuilt binaries from npm: never fetch llama.cpp sources.
    NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true',
    npm_config_update_notifier: 'false',
  };
  await run(
    npm,
    ['install', '--prefix', PEER_PREFIX, '--no-save', '--no-audit', '--no-fund', `${PEER_NAME}@${PEER_VERSION}`],
    env,
    log,
  );
  const seconds = (performance.now() - started) / 1000;
  const version = installedPeerVersion();
  if (version !== PEER_VERSION) throw new Error(`peer: after npm install, ${PEER_DIR} has version ${version ?? '(none)'}`);
  log(`peer: installed ${PEER_NAME}@${version} in ${seconds.toFixed(1)} s`);
  return { importPath: peerImportPath(), dir: PEER_DIR, version, installed: true, seconds };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const peer = await ensurePeer();
    const mb = folderBytes(PEER_PREFIX) / 2 ** 20;
    console.log(`${PEER_NAME}@${peer.version} ${peer.installed ? `installed in ${peer.seconds.toFixed(1)} s` : 'already installed'}`);
    console.log(`  folder: ${peer.dir} (${PEER_PREFIX}: ${mb.toFixed(0)} MiB)`);
    console.log(`  import: ${peer.importPath}`);
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  }
}
