/**
 * The folder of fineserve's package.json, found from a module wherever it was built to: lib/
 * (sources under tsx), dist/ (ES modules) or dist/cjs/ (CommonJS, whose folder has a package.json
 * of its own, without a name). Modules that find files of the package (the addon, the reference
 * profiles) start from here rather than from a fixed number of `..`.
 * @module
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** @internal The package root above the module at `moduleUrl` (its `import.meta.url`). */
export function packageRoot(moduleUrl: string): string {
  const from = dirname(fileURLToPath(moduleUrl));
  for (let dir = from; ; dir = dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }).name === 'fineserve') return dir;
    } catch {
      // No package.json here (or not JSON): keep going up.
    }
    if (dirname(dir) === dir) return join(from, '..', '..');
  }
}
