/**
 * Per-system summary lines of the memory bench and its targets: KV Slab vs static partitions
 * (throughput at the same attainment) and full FineServe vs static + FCFS.
 * @module
 */
import type { MemoryRun } from '../../lib/sim/memory-comparison.js';
import { median } from '../engine-cpu/measure.js';

export function summaryOf(r: MemoryRun) {
  const byModel = Object.entries(r.concurrency);
  return {
    label: r.system.label,
    policy: r.system.policy,
    kvPool: r.system.kvPool,
    dropLate: r.system.dropLate,
    sloAttainment: r.report.sloAttainment,
    tokensPerSecond: r.report.tokensPerSecond,
    goodTokensPerSecond: r.report.goodTokensPerSecond,
    wallMs: r.report.wallMs,
    preemptions: r.report.models.reduce((a, m) => a + m.preemptions, 0),
    dropped: r.report.models.reduce((a, m) => a + m.finished.error, 0),
    meanRunning: byModel.reduce((a, [, c]) => a + c.meanRunning, 0),
    meanRunningByModel: Object.fromEntries(byModel.map(([m, c]) => [m, c.meanRunning])),
    peakRunningByModel: Object.fromEntries(byModel.map(([m, c]) => [m, c.peakRunning])),
    meanLiveTokens: r.meanLiveTokens,
    mapCostMs: r.mapCostMs,
  };
}

const ratio = (a: number | undefined, b: number | undefined): number | null => (a === undefined || b === undefined || !(b > 0) ? null : a / b);


/** Each system's run of median throughput over the rounds (the lower middle one for an even count), in `labels` order. */
export function medianRuns(labels: readonly string[], rounds: readonly (readonly MemoryRun[])[]): MemoryRun[] {
  return labels.flatMap((label) => {
    const mine = rounds.flatMap((r) => r.filter((x) => x.system.label === label)).sort((a, b) => a.report.tokensPerSecond - b.report.tokensPerSecond);
    return mine.length === 0 ? [] : [mine[(mine.length - 1) >> 1]!];
  });
}

/** Ratios of systems measured in the same round (paired), per round and their median. */
export function pairedRounds(rounds: readonly (readonly MemoryRun[])[]) {
  const pair = (a: string, b: string, field: 'tokensPerSecond' | 'sloAttainment') => {
    const perRound = rounds.map((r) => ratio(r.find((x) => x.system.label === a)?.report[field], r.find((x) => x.system.label === b)?.report[field]));
    const measured = perRound.filter((x): x is number => x !== null);
    return { perRound, median: measured.length === 0 ? null : median(measured) };
  };
  return {
    count: rounds.length,
    slabVsStaticThroughput: pair('kv-slab', 'static', 'tokensPerSecond'),
    slabVsStaticAttainment: pair('kv-slab', 'static', 'sloAttainment'),
    fineserveVsStaticFcfsThroughput: pair('fineserve', 'static-fcfs', 'tokensPerSecond'),
    fineserveVsStaticFcfsAttainment: pair('fineserve', 'static-fcfs', 'sloAttainment'),
  };
}

export function targetsOf(runs: readonly MemoryRun[]) {
  const by = (label: string) => runs.find((r) => r.system.label === label)?.report;
  const slab = by('kv-slab');
  const stat = by('static');
  const fs = by('fineserve');
  const base = by('static-fcfs');
  const slabVsStatic = { throughput: ratio(slab?.tokensPerSecond, stat?.tokensPerSecond), attainment: ratio(slab?.sloAttainment, stat?.sloAttainment), target: 1.3 };
  const fineserveVsStaticFcfs = { attainment: ratio(fs?.sloAttainment, base?.sloAttainment), throughput: ratio(fs?.tokensPerSecond, base?.tokensPerSecond), target: { attainment: 1.5, throughput: 1.2 } };
  return {
    slabVsStatic: { ...slabVsStatic, met: slabVsStatic.throughput !== null && slabVsStatic.throughput >= 1.3 && (slabVsStatic.attainment ?? 0) >= 1 },
    poolThroughputVsStatic: Object.fromEntries(runs.filter((r) => ['kv-slab', 'static', 'unified', 'paged'].includes(r.system.label)).map((r) => [r.system.label, ratio(r.report.tokensPerSecond, stat?.tokensPerSecond)])),
    fineserveVsStaticFcfs: { ...fineserveVsStaticFcfs, met: (fineserveVsStaticFcfs.attainment ?? 0) >= 1.5 && (fineserveVsStaticFcfs.throughput ?? 0) >= 1.2 },
  };
}
