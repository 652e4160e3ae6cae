// Runs the C++ tests of cpp/core with ctest, from the build folder cmake-js configured (the tests
// are built there in every source checkout, against the vendored doctest in test/cpp/vendor, so
// the core is compiled once for both).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const build = join(root, 'build');
const run = (cmd, args) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit' }).status ?? 1;

if (!existsSync(join(build, 'CMakeCache.txt'))) {
  console.error('test:cpp: build/ is not configured; run `npm ci` or `npm run build:native` first');
  process.exit(1);
}
if (!existsSync(join(build, 'CTestTestfile.cmake'))) {
  console.error(
    'test:cpp: the C++ tests were not configured in build/ (configured with FINESERVE_TESTS=OFF?).\n' +
      'Run `npx cmake-js configure --CDFINESERVE_TESTS=AUTO`, then `npm run build:native`.',
  );
  process.exit(1);
}
let status = run('cmake', ['--build', build, '--parallel', String(availableParallelism())]);
if (status === 0) status = run('ctest', ['--test-dir', build, '--output-on-failure', '--no-tests=error']);
process.exit(status);
