/**
 * Bringing each benched model to disk: the fixture and --gguf files are read where they are; a
 * generator shape is generated once (F16, seed 0) and kept, and its quantized types are rewritten
 * from that file every run, so they always come from the writer being measured.
 * @module
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, relative } from 'node:path';

import { generateModel, quantizeGguf } from '../../lib/index.js';
import { type ModelSpec, ROOT } from './config.js';

/** The overrides of a generated model as its command line, for logs and the results file. */
function shapeArgs(m: Extract<ModelSpec, { kind: 'generated' }>): string {
  return `--shape ${m.shape}${m.layers === undefined ? '' : ` --layers ${m.layers}`}${m.vocab === undefined ? '' : ` --vocab ${m.vocab}`}`;
}

/** Where the file came from, for the results file. */
export function modelSource(m: ModelSpec): string {
  if (m.kind === 'file') return m.origin;
  return `generated (${shapeArgs(m)}, F16, seed 0)${m.type === 'f16' ? '' : `, ${m.type} written by quantizeGguf`}`;
}

/** The GGUF file of `m`, generated or quantized first where it must be. */
export async function modelPath(m: ModelSpec, log: (line: string) => void): Promise<string> {
  if (m.kind === 'file') {
    if (existsSync(m.path)) return m.path;
    if (m.origin === 'fixture') throw new Error(`missing fixture ${m.path} (the stories260K fixture is expected in ../shared/fixtures)`);
    throw new Error(`--gguf ${m.path}: no such file`);
  }
  if (!existsSync(m.f16Path)) {
    log(`generating ${relative(ROOT, m.f16Path)} (${shapeArgs(m)}, F16 matrices, seed 0)...`);
    mkdirSync(dirname(m.f16Path), { recursive: true });
    const t0 = performance.now();
    const g = await generateModel({
      shape: m.shape,
      ...(m.layers !== undefined && { layers: m.layers }),
      ...(m.vocab !== undefined && { vocab: m.vocab }),
      dtype: 'f16',
      format: 'gguf',
      seed: 0,
      out: m.f16Path,
    });
    log(`  ${(g.parameters / 1e6).toFixed(1)}M parameters, ${(g.bytes / 2 ** 20).toFixed(0)} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  if (m.type === 'f16') return m.f16Path;
  const q = await quantizeGguf(m.f16Path, m.path, m.type);
  log(`wrote ${relative(ROOT, m.path)}: ${(q.bytes / 2 ** 20).toFixed(0)} MiB, ${q.quantized} tensors ${m.type.toUpperCase()}, kept ${q.kept.map((k) => `${k.name}:${k.type}`).join(' ') || 'none'}`);
  return m.path;
}
