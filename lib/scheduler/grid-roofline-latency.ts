/**
 * Step latency as the simulator charges it: the profile inside its grid, the fitted roofline past
 * it. Holding the grid's edge out (lib/scheduler/roofline-fit.ts) shows the roofline extrapolates
 * better than the profile's straight lines, differently per kind of step:
 * - prefill uses the roofline alone outside the profiled batches and prompt lengths (below the
 *   shortest prompt too: chunks pay the per-step overhead a line through 256 and 512 does not
 *   see). TTFT rows are noisy (a smaller batch is sometimes slower than a larger one), and an
 *   anchor on the edge row carries that row's noise into every step past it;
 * - decode scales the profile at the nearest grid point by the roofline's ratio between the step
 *   and that point: TPOT rows are smooth, so the anchor is sound and the step is continuous at the
 *   grid's edge.
 * @module
 */
import type { LatencyModel, ProfileLatencyModel } from './latency-model.js';
import type { RooflineLatencyModel } from './roofline.js';

const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, x));

/** The profile inside its grid, the roofline outside. */
export class GridRooflineLatencyModel implements LatencyModel {
  readonly profile: ProfileLatencyModel;
  readonly roofline: RooflineLatencyModel;

  constructor(profile: ProfileLatencyModel, roofline: RooflineLatencyModel) {
    this.profile = profile;
    this.roofline = roofline;
  }

  prefillMs(batch: number, tokens: number): number {
    const p = this.profile;
    const perSeq = tokens / Math.max(batch, 1);
    const inside = batch <= p.batches.at(-1)! && perSeq >= p.lengths[0]! && perSeq <= p.lengths.at(-1)!;
    return inside ? p.prefillMs(batch, tokens) : this.roofline.prefillMs(batch, tokens);
  }

  decodeMs(batch: number, context: number): number {
    const p = this.profile;
    const b = clamp(batch, p.batches[0]!, p.batches.at(-1)!);
    const c = clamp(context, p.contexts[0]!, p.contexts.at(-1)!);
    if (b === batch && c === context) return p.decodeMs(batch, context);
    return (p.decodeMs(b, c) * this.roofline.decodeMs(batch, context)) / this.roofline.decodeMs(b, c);
  }

  observe(): void {}
}
