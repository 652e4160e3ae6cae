/**
 * Latency profiles in the reference system's CSV schema (one row per model, quantization format,
 * TP degree, MPS share, batch size and lengths): reading the reference H100 files where they lie
 * in ../shared, and writing the same schema from `fineserve profile`.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { packageRoot } from '../package-root.js';
import { PlanError } from './errors.js';

/** One measured configuration. Times are in seconds, as in the reference files. */
export interface ProfileRow {
  readonly model: string;
  /** Reference quantization name: `org`, `fp8`, `fp8_kv8`, `awq`, `qoq` (or ours, e.g. `f32`). */
  readonly qformat: string;
  readonly tp: number;
  readonly mpsPercentage: number;
  readonly batchSize: number;
  readonly inputLen: number;
  readonly outputLen: number;
  readonly seqLen: number;
  readonly prefillTime: number;
  readonly decodeTime: number;
  readonly ttft: number;
  readonly tpot: number;
  readonly e2e: number;
}

/** The header of every profile CSV, in column order. */
export const PROFILE_COLUMNS = [
  'model',
  'qformat',
  'tp',
  'mps_percentage',
  'batch_size',
  'input_len',
  'output_len',
  'seq_len',
  'prefill_time',
  'decode_time',
  'ttft',
  'tpot',
  'e2e',
] as const;

/** The repository root (this file is lib/scheduler/ in a checkout, dist/scheduler/ when built). */
export const REPO_ROOT = packageRoot(import.meta.url);

/** Which reference profile set: the authors' in-house H100 cluster or AWS H100s. */
export type ReferenceProfileSet = 'apex' | 'aws';

/** Path of a reference profile CSV: `../shared/reference/fineserve-profiles/<set>-cost.csv`. */
export function referenceProfilePath(set: ReferenceProfileSet = 'apex', root: string = REPO_ROOT): string {
  return join(root, '..', 'shared', 'reference', 'fineserve-profiles', `${set}-cost.csv`);
}

/**
 * Reads the reference H100 profiles where they lie (they are never copied into the repository).
 * Throws `ERR_PROFILE_MISSING` naming the path when the shared folder is absent.
 */
export function loadReferenceProfiles(set: ReferenceProfileSet = 'apex', root: string = REPO_ROOT): ProfileRow[] {
  const path = referenceProfilePath(set, root);
  if (!existsSync(path)) {
    throw new PlanError(
      'ERR_PROFILE_MISSING',
      path,
      'file',
      'the reference H100 profiles are not there; they are read from ../shared/reference/fineserve-profiles next to the repository',
    );
  }
  return parseProfileCsv(readFileSync(path, 'utf8'), path);
}

/** Parses a profile CSV; `source` names the file in errors. Rows of a model name that is not a name (a truncated line) are rejected. */
export function parseProfileCsv(text: string, source = 'profile.csv'): ProfileRow[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = lines[0]?.split(',').map((h) => h.trim());
  if (header === undefined || PROFILE_COLUMNS.some((c, i) => header[i] !== c)) {
    throw new PlanError('ERR_PROFILE_CORRUPT', source, 'header', `expected "${PROFILE_COLUMNS.join(',')}", got "${lines[0] ?? ''}"`);
  }
  const rows: ProfileRow[] = [];
  for (let i = 1; i < lines.length; i++) {
    const cells = lines[i]!.split(',').map((c) => c.trim());
    if (cells.length !== PROFILE_COLUMNS.length) {
      throw new PlanError('ERR_PROFILE_CORRUPT', `${source}:${i + 1}`, 'row', `expected ${PROFILE_COLUMNS.length} cells, got ${cells.length}`);
    }
    const num = (k: number): number => {
      const v = Number(cells[k]);
      if (cells[k] === '' || !Number.isFinite(v)) {
        throw new PlanError('ERR_PROFILE_CORRUPT', `${source}:${i + 1}`, PROFILE_COLUMNS[k]!, `not a number: "${cells[k]}"`);
      }
      return v;
    };
    rows.push({
      model: canonicalModelName(cells[0]!),
      qformat: cells[1]!,
      tp: num(2),
      mpsPercentage: num(3),
      batchSize: num(4),
      inputLen: num(5),
      outputLen: num(6),
      seqLen: num(7),
      prefillTime: num(8),
      decodeTime: num(9),
      ttft: num(10),
      tpot: num(11),
      e2e: num(12),
    });
  }
  return rows;
}

// The AWS file has one row whose model lost its first letter ("lama-3-8b"); the reference's
// loader keys on the name, so that row is silently orphaned there. We repair the one known case.
function canonicalModelName(name: string): string {
  return name === 'lama-3-8b' ? 'llama-3-8b' : name;
}

/** Writes rows in the reference schema (times in seconds), header first. */
export function formatProfileCsv(rows: readonly ProfileRow[]): string {
  const lines: string[] = [PROFILE_COLUMNS.join(',')];
  for (const r of rows) {
    lines.push(
      [r.model, r.qformat, r.tp, r.mpsPercentage, r.batchSize, r.inputLen, r.outputLen, r.seqLen, r.prefillTime, r.decodeTime, r.ttft, r.tpot, r.e2e].join(','),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Rows of one (model, qformat, tp, mps) configuration. */
export function selectRows(rows: readonly ProfileRow[], model: string, qformat: string, tp: number, mps = 100): ProfileRow[] {
  return rows.filter((r) => r.model === model && r.qformat === qformat && r.tp === tp && r.mpsPercentage === mps);
}
