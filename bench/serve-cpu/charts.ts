/**
 * The serving benchmark's curves as SVG next to its JSON: SLO attainment and token throughput
 * (all tokens, and tokens within SLO) against the request rate, one line per policy.
 * @module
 */
import { writeFileSync } from 'node:fs';

import { lineChart } from '../sim/charts.js';

/** The part of bench/results/serve-cpu.json the charts read. */
export interface ServeCpuPoints {
  readonly points: readonly {
    readonly rate: number;
    readonly fineserve: { readonly sloAttainment: number; readonly tokensPerSecond: number; readonly goodTokensPerSecond: number };
    readonly staticFcfs: { readonly sloAttainment: number; readonly tokensPerSecond: number; readonly goodTokensPerSecond: number };
  }[];
}

/** Writes `<stem>-attainment.svg` and `<stem>-throughput.svg`; returns their paths. */
export function writeCharts(result: ServeCpuPoints, stem: string): string[] {
  const line = (name: string, pick: (p: ServeCpuPoints['points'][number]) => number) => ({ name, points: result.points.map((p) => [p.rate, pick(p)] as const) });
  const attainment = lineChart('SLO attainment, three precisions on one CPU', 'requests / s', 'attainment', [
    line('fineserve', (p) => p.fineserve.sloAttainment),
    line('static + fcfs', (p) => p.staticFcfs.sloAttainment),
  ], 1);
  const throughput = lineChart('Token throughput, three precisions on one CPU', 'requests / s', 'tokens / s', [
    line('fineserve', (p) => p.fineserve.tokensPerSecond),
    line('static + fcfs', (p) => p.staticFcfs.tokensPerSecond),
    line('fineserve within SLO', (p) => p.fineserve.goodTokensPerSecond),
    line('static + fcfs within SLO', (p) => p.staticFcfs.goodTokensPerSecond),
  ]);
  const files = [`${stem}-attainment.svg`, `${stem}-throughput.svg`];
  writeFileSync(files[0]!, attainment);
  writeFileSync(files[1]!, throughput);
  return files;
}
