/**
 * From replays to numbers: the per-policy summary (live tokens, utilisation, where the pool's bytes
 * went, requests, native cost, compaction cost), the sweep rows and the one-line summary.
 * @module
 */
import type { CompactionLog } from './compaction.js';
import type { Config } from './config.js';
import { copyUs, type HostCopy } from './copy-cost.js';
import type { RunResult } from './metrics.js';

export function quantile(values: Float64Array, q: number): number {
  const s = Float64Array.from(values).sort();
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
}

export const round = (v: number, digits = 4): number => Number(v.toFixed(digits));
export const pct = (v: number): string => `${(v * 100).toFixed(1)} %`;
const sum = (a: Float64Array): number => a.reduce((x, y) => x + y, 0);

/** Bytes compaction copied, per step, and the time that would take at the stated bandwidths. */
function compactionCost(log: CompactionLog, r: RunResult, cfg: Config, host: HostCopy | undefined) {
  const steps = r.stepsRun;
  const bytes = log.bytesMoved.subarray(0, steps);
  const active = bytes.filter((b) => b > 0);
  const total = sum(bytes);
  const window = bytes.subarray(r.windowSteps.from, Math.min(steps, r.windowSteps.to));
  const mean = total / Math.max(1, steps);
  const p99 = quantile(bytes, 0.99);
  const max = active.reduce((a, b) => Math.max(a, b), 0);
  const bw = cfg.copyBandwidth;
  const at = (bps: number) => ({
    bytesPerSecond: bps,
    usPerStepMean: round(copyUs(mean, bps), 2),
    usPerStepP99: round(copyUs(p99, bps), 2),
    usPerStepMax: round(copyUs(max, bps), 2),
    usPerCompactingStepMean: round(copyUs(total / Math.max(1, active.length), bps), 2),
    shareOfStepTime: round(copyUs(mean, bps) / (cfg.stepSeconds * 1e6), 5),
    totalMs: round(copyUs(total, bps) / 1000, 2),
  });
  const compactNs = sum(log.compactNs.subarray(0, steps));
  const blocks = sum(log.blocksMoved.subarray(0, steps));
  return {
    // When it ran.
    shortSteps: log.shortSteps,
    noDonorSteps: log.noDonorSteps,
    stuckSteps: log.stuckSteps,
    compactingSteps: active.length,
    compactCalls: log.compactCalls,
    slabsReleased: sum(log.slabsReleased.subarray(0, steps)),
    retryRounds: log.retryRounds,
    retryGrowth: log.retryGrowth,
    retryAdmitted: log.retryAdmitted,
    // What it moved.
    blocksMoved: blocks,
    blocksMovedPerModel: Object.fromEntries(r.models.map((m, i) => [m.name, log.blocksMovedPerModel[i] ?? 0])),
    bytesMoved: total,
    bytesPerStep: {
      mean: Math.round(mean),
      p50: Math.round(quantile(bytes, 0.5)),
      p99: Math.round(p99),
      max: Math.round(max),
      meanWhenCompacting: Math.round(total / Math.max(1, active.length)),
      p99WhenCompacting: Math.round(quantile(active, 0.99)),
      meanInWindow: Math.round(sum(window) / Math.max(1, window.length)),
    },
    // What the copies would cost (the bench pool holds no memory; this is bytes / bandwidth).
    copyTime: {
      device: at(bw.deviceBytesPerSecond),
      host: at(bw.hostBytesPerSecond),
      ...(host === undefined ? {} : { hostMeasured: { ...at(host.bytesPerSecond), measurement: host } }),
    },
    // The pool's own bookkeeping for compact() (included in native.usPerStep*).
    bookkeeping: {
      usPerStepMean: round(compactNs / Math.max(1, steps) / 1000, 3),
      nsPerBlockMoved: round(compactNs / Math.max(1, blocks), 1),
    },
  };
}

export function summarize(r: RunResult, cfg: Config, host?: HostCopy) {
  const w = r.window;
  const per = (v: number): number => v / Math.max(1, w.steps);
  const share = (v: number): number => round(per(v) / cfg.poolBytes);
  const c = r.counters;
  const simSeconds = r.stepsRun * cfg.stepSeconds;
  const nativeTotal = sum(r.nativeNs);
  return {
    label: r.spec.label,
    policy: r.spec.options.policy,
    note: r.spec.note,
    compaction: r.spec.compaction,
    models: r.models,
    // Mean live KV tokens over the window (the same steps for every policy), and over the steps
    // where this policy had requests waiting.
    tokensAtSaturation: Math.round(per(w.liveTokens)),
    tokensWhenSaturated: Math.round(w.saturatedLiveTokens / Math.max(1, w.saturatedSteps)),
    liveTokensPerModel: Object.fromEntries(r.models.map((m, i) => [m.name, Math.round(per(w.modelLiveTokens[i] ?? 0))])),
    heldShareOfPoolPerModel: Object.fromEntries(r.models.map((m, i) => [m.name, share(w.modelHeldBytes[i] ?? 0)])),
    externalShareOfPoolPerModel: Object.fromEntries(r.models.map((m, i) => [m.name, share(w.modelExternalBytes[i] ?? 0)])),
    utilisation: {
      meanInWindow: share(w.liveBytes),
      meanWhenSaturated: round(w.saturatedUtil / Math.max(1, w.saturatedSteps)),
      peak: round(r.peakUtil),
      poolReportedPeak: round(r.poolPeakLiveTokenBytes / cfg.poolBytes),
      saturatedStepShare: round(w.saturatedSteps / Math.max(1, w.steps)),
    },
    // Where the pool's bytes were, averaged over the window; the six shares sum to 1.
    poolShares: {
      liveTokens: share(w.liveBytes),
      internal: share(w.internal),
      external: share(w.external),
      externalHeldByIdleModels: share(w.externalIdle),
      tail: share(w.tail),
      free: share(w.free),
      unusable: share(w.unusable),
    },
    phases: r.phaseLiveTokens.map((t, p) => ({ phase: p, hotModel: r.models[p % r.models.length]?.name, meanLiveTokens: Math.round(t), meanUtil: round(r.phaseUtil[p] ?? 0) })),
    requests: { ...c },
    admittedPromptTokensPerSecond: Math.round(w.admittedPromptTokens / Math.max(1e-9, w.steps * cfg.stepSeconds)),
    completedTokens: c.completedInputTokens + c.completedOutputTokens,
    outputTokensPerSecond: Math.round(c.completedOutputTokens / simSeconds),
    native: {
      stepsRun: r.stepsRun,
      calls: r.nativeCalls,
      usPerStepMean: round(nativeTotal / Math.max(1, r.stepsRun) / 1000, 2),
      usPerStepP50: round(quantile(r.nativeNs, 0.5) / 1000, 2),
      usPerStepP99: round(quantile(r.nativeNs, 0.99) / 1000, 2),
      nsPerBlockOp: round(nativeTotal / Math.max(1, r.blockOps), 1),
      blockOps: r.blockOps,
    },
    ...(r.spec.options.policy === 'paged'
      ? { pagedMapping: { mapCalls: r.mapCalls, modelledMsPerStep: round(r.mapCostNs / r.stepsRun / 1e6, 3), shareOfStepTime: round(r.mapCostNs / 1e9 / simSeconds) } }
      : {}),
    ...(r.compaction === undefined ? {} : { compactionCost: compactionCost(r.compaction, r, cfg, host) }),
    wallMs: Math.round(r.wallMs),
  };
}

export type Summary = ReturnType<typeof summarize>;

/** One line per replay while the bench runs. */
export function logLine(s: Summary): string {
  const cc = s.compactionCost;
  return (
    `  ${s.label.padEnd(17)} ${String(s.tokensAtSaturation).padStart(7)} live tokens, util ${pct(s.utilisation.meanWhenSaturated)} saturated ` +
    `(peak ${pct(s.utilisation.peak)}), external ${pct(s.poolShares.external)}, completed ${s.requests.completed}, rejected ${s.requests.rejected}, ` +
    `preempted ${s.requests.preemptions}, ${s.native.usPerStepMean} us/step native` +
    (cc === undefined ? '' : `, compaction ${mib(cc.bytesPerStep.mean)} MiB/step mean, p99 ${mib(cc.bytesPerStep.p99)} MiB`)
  );
}

export const mib = (bytes: number, digits = 2): string => (bytes / 2 ** 20).toFixed(digits);

/** The few numbers a sweep point needs. */
export function sweepRow(s: Summary, extra: Record<string, number>) {
  const cc = s.compactionCost;
  return {
    ...extra,
    label: s.label,
    tokensAtSaturation: s.tokensAtSaturation,
    utilWhenSaturated: s.utilisation.meanWhenSaturated,
    utilPeak: s.utilisation.peak,
    external: s.poolShares.external,
    tail: s.poolShares.tail,
    completed: s.requests.completed,
    rejected: s.requests.rejected,
    preemptions: s.requests.preemptions,
    completedTokens: s.completedTokens,
    ...(cc === undefined
      ? {}
      : { compactionBytesPerStepMean: cc.bytesPerStep.mean, compactionBytesPerStepP99: cc.bytesPerStep.p99, compactionBytesPerStepMax: cc.bytesPerStep.max }),
  };
}

export type SweepRow = ReturnType<typeof sweepRow>;
