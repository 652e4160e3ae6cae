/**
 * The memory bench's charts as SVG beside its JSON: concurrent sequences over time (all models,
 * one line per system; and per model for the KV Slab and static partitions), and decode tokens/s
 * against batch size.
 * @module
 */
import { writeFileSync } from 'node:fs';

import type { MemoryRun } from '../../lib/sim/memory-comparison.js';
import { lineChart } from '../sim/charts.js';
import type { BatchPoint } from './batch-scaling.js';

const seconds = (ms: number): number => Math.round(ms / 100) / 10;

/** Writes `<stem>-concurrency.svg`, `<stem>-<label>-models.svg` (kv-slab, static) and `<stem>-batch.svg`; returns their paths. */
export function writeCharts(runs: readonly MemoryRun[], batch: readonly BatchPoint[], stem: string): string[] {
  const files: string[] = [];
  const write = (file: string, svg: string): void => {
    writeFileSync(file, svg);
    files.push(file);
  };
  write(
    `${stem}-concurrency.svg`,
    lineChart('Concurrent sequences, all models (same arrivals)', 'seconds', 'running sequences', runs.map((r) => ({ name: r.system.label, points: r.samples.map((s) => [seconds(s.tMs), Object.values(s.running).reduce((a, b) => a + b, 0)] as const) }))),
  );
  for (const label of ['kv-slab', 'static']) {
    const run = runs.find((r) => r.system.label === label);
    if (run === undefined) continue;
    const models = Object.keys(run.samples[0]?.running ?? {});
    write(`${stem}-${label}-models.svg`, lineChart(`Concurrent sequences per model, ${label}`, 'seconds', 'running sequences', models.map((m) => ({ name: m, points: run.samples.map((s) => [seconds(s.tMs), s.running[m] ?? 0] as const) }))));
  }
  const precisions = [...new Set(batch.map((p) => p.precision))];
  if (batch.length > 1) write(`${stem}-batch.svg`, lineChart('Decode throughput vs batch, one model alone', 'sequences in the batch', 'tokens / s', precisions.map((pr) => ({ name: `${pr} weights`, points: batch.filter((p) => p.precision === pr).map((p) => [p.batch, p.tokensPerSecond] as const) }))));
  return files;
}
