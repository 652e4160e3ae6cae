// Builds bench/cpp/kv_alloc_bench.cc into build-bench/ (when a source is newer than the binary)
// and runs it, passing the arguments through; its JSON goes to stdout, compiler output to stderr.
// A plain g++ line rather than the CMake build: the microbenchmark needs only the allocator code,
// and -O2 is what the addon's Release build uses too.
//
//   node bench/build-alloc-bench.mjs --pool-bytes N --model ... (see kv_alloc_bench.cc)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const out = join(root, 'build-bench', 'kv_alloc_bench');
const kvDir = join(root, 'cpp', 'core', 'kv');
// All of the KV core; kv_arena.cc refers to the CUDA seam, which cuda_absent.cc stubs out.
const sources = [
  join(root, 'bench', 'cpp', 'kv_alloc_bench.cc'),
  ...readdirSync(kvDir)
    .filter((f) => f.endsWith('.cc'))
    .sort()
    .map((f) => join(kvDir, f)),
  join(root, 'cpp', 'core', 'cuda_absent.cc'),
];
const headers = readdirSync(kvDir)
  .filter((f) => f.endsWith('.h'))
  .map((f) => join(kvDir, f));

const mtime = (p) => statSync(p).mtimeMs;
const stale = !existsSync(out) || [...sources, ...headers].some((p) => mtime(p) > mtime(out));
if (stale) {
  mkdirSync(dirname(out), { recursive: true });
  const cxx = process.env.CXX || 'g++';
  const args = ['-O2', '-std=c++17', '-I', 'cpp/core', ...sources.map((s) => relative(root, s)), '-o', relative(root, out)];
  process.stderr.write(`kv-alloc-bench: ${cxx} ${args.join(' ')}\n`);
  const r = spawnSync(cxx, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    process.stderr.write(`kv-alloc-bench: compile failed (${r.error?.message ?? `exit ${r.status}`})\n`);
    process.exit(1);
  }
}
const run = spawnSync(out, process.argv.slice(2), { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
process.exit(run.status ?? 1);
