// The CommonJS build (issue #16 item 14): `require('fineserve')` loads dist/cjs/, a file-for-file
// CommonJS copy of lib/ beside the ES modules tsc writes to dist/. tsc cannot emit it: modules
// that find their own files (the addon loader, the tokenizer's worker) use import.meta.url, which
// a CommonJS emit rejects. esbuild transpiles each file on its own (no bundling, same layout, so
// relative paths still hold) and turns import.meta.url into the file's own URL from __filename.
// The declarations are tsc's, copied beside the JS; dist/cjs/package.json marks both as CommonJS.
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const lib = join(root, 'lib');
const dist = join(root, 'dist');
const out = join(dist, 'cjs');

function files(dir, suffix, skip = () => false) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (skip(path)) return [];
    if (e.isDirectory()) return files(path, suffix, skip);
    return e.name.endsWith(suffix) && !e.name.endsWith(`.d${suffix}`) ? [path] : [];
  });
}

rmSync(out, { recursive: true, force: true });
await build({
  entryPoints: files(lib, '.ts'),
  outdir: out,
  outbase: lib,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  bundle: false,
  sourcemap: true,
  logLevel: 'warning',
  define: { 'import.meta.url': '__fineserveModuleUrl', 'import.meta.resolve': '__fineserveResolve' },
  banner: {
    js:
      'const __fineserveModuleUrl = require("node:url").pathToFileURL(__filename).href;\n' +
      'const __fineserveResolve = (s) => require("node:url").pathToFileURL(require.resolve(s)).href;',
  },
});
writeFileSync(join(out, 'package.json'), `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`);
// tsc's declarations, as CommonJS ones (the folder's package.json says so); dist/cjs itself is skipped.
const declarations = files(dist, '.d.ts', (p) => p === out).filter((p) => p.endsWith('.d.ts'));
for (const file of declarations) {
  const target = join(out, relative(dist, file));
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(file, target);
}
console.log(`dist/cjs: ${files(out, '.js').length} CommonJS modules, ${declarations.length} declaration files`);
