/**
 * ModelGroup: one model id as the Engine serves it: its host weights and tokenizer, loaded once,
 * and its replicas, one per device that serves it (data parallel), each a ServedModel with its
 * own executor, KV and queue on that device's scheduler lane. Requests are routed to the replica
 * predicted to start them soonest; counters, attainment and the arrival rate are the model's, over
 * all of its replicas and across migrations.
 * @module
 */
import type { Model } from '../model.js';
import type { MeasuredLatencyModel } from '../scheduler/measured-latency.js';
import type { Tokenizer } from '../tokenizer.js';
import type { Device } from './device.js';
import { ModelStatsRecorder } from './model-stats.js';
import { RateMeter } from './rate-meter.js';
import type { ReplicaFootprint } from './replica.js';
import type { Sequence, PendingEnd } from './sequence.js';
import type { ServedModel, ServingLimits } from './served-model.js';

/** One device's copy of a model. */
export interface Replica {
  readonly served: ServedModel;
  readonly device: Device;
  /** 'serving' takes new requests; 'draining' finishes what it holds and is then freed. */
  state: 'serving' | 'draining';
}

/** What every replica of a model is made with. */
export interface ReplicaSettings {
  readonly slo: { readonly ttftMs?: number; readonly tpotMs?: number };
  readonly limits: ServingLimits;
  readonly dropLate: boolean;
  readonly chatTemplate: string | undefined;
  readonly kvReserveTokens: number | undefined;
}

/** See the module comment. */
export class ModelGroup {
  readonly id: string;
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  /** The engine loaded the weights (and frees them); a Model the caller passed stays the caller's. */
  readonly ownsModel: boolean;
  readonly settings: ReplicaSettings;
  readonly stats = new ModelStatsRecorder();
  readonly rate: RateMeter;
  readonly replicas: Replica[] = [];
  /** Only this device may serve it. */
  readonly pinned: string | undefined;
  /** Exactly this many replicas. */
  readonly fixedReplicas: number | undefined;
  /** Its latency model on each kind of device, measured there (a replica's own, learning online). */
  readonly costs = new Map<string, MeasuredLatencyModel>();
  /** Its KV per token and reserve, the same on every device. */
  footprint: ReplicaFootprint | undefined;
  /**
   * Prompt and requested output tokens of recent arrivals (decayed means): the lengths placement
   * plans for until requests have finished and say what they really generate.
   */
  readonly requested = { promptTokens: 0, outputTokens: 0, weight: 0 };
  /**
   * When it was placed, or a re-plan or migrate() last changed its replicas (performance.now()
   * ms): a re-plan leaves it alone for the cool-down after, while its rate and latency model are
   * still measured on too little.
   */
  lastMoveMs: number;
  /** ms one replica took to attach and warm up: what moving it costs beside the drain. */
  loadMs = 0;
  /** 'draining': no new requests; 'closed': unloaded. */
  state: 'ready' | 'draining' | 'closed' = 'ready';

  constructor(init: {
    id: string;
    model: Model;
    tokenizer: Tokenizer;
    ownsModel: boolean;
    settings: ReplicaSettings;
    expectedRate: number;
    pinned: string | undefined;
    fixedReplicas: number | undefined;
    nowMs: number;
  }) {
    this.id = init.id;
    this.model = init.model;
    this.tokenizer = init.tokenizer;
    this.ownsModel = init.ownsModel;
    this.settings = init.settings;
    this.rate = new RateMeter(init.nowMs, { expected: init.expectedRate });
    this.pinned = init.pinned;
    this.fixedReplicas = init.fixedReplicas;
    this.lastMoveMs = init.nowMs;
  }

  /** Records an arrival's lengths (see {@link requested}). */
  arrivedWith(promptTokens: number, maxTokens: number): void {
    const r = this.requested;
    r.weight = 0.9 * r.weight + 0.1;
    r.promptTokens = 0.9 * r.promptTokens + 0.1 * promptTokens;
    r.outputTokens = 0.9 * r.outputTokens + 0.1 * maxTokens;
  }

  /** The replicas taking new requests. */
  get serving(): Replica[] {
    return this.replicas.filter((r) => r.state === 'serving');
  }

  get hasWork(): boolean {
    return this.replicas.some((r) => r.served.hasWork);
  }

  /** Every queued and running request's result, over all replicas. */
  pending(): Promise<unknown>[] {
    return this.replicas.flatMap((r) => [...r.served.waiting, ...r.served.running].map((s) => s.run.result));
  }

  /**
   * The serving replica predicted to give a `promptTokens` request its first token soonest: the
   * prefill work queued ahead of it on its device (every model's, when they take turns on it;
   * its own, when they run side by side), then its own prefill, each by its latency model.
   */
  route(promptTokens: number): Replica {
    const candidates = this.serving;
    // One replica (most models): nothing to compare, and the queue scan below is per request.
    if (candidates.length === 1) return candidates[0]!;
    let best = candidates[0]!;
    let bestMs = Infinity;
    for (const r of candidates) {
      const lane = r.device.sharing === 'time' ? r.device.scheduler.models : [r.served];
      let ms = r.served.latency.prefillMs(1, promptTokens);
      for (const o of lane) {
        const queued = o.waiting.reduce((a, s) => a + s.uncomputed, 0) + o.running.reduce((a, s) => a + (s.isDecoding ? 0 : s.uncomputed), 0);
        if (queued > 0) ms += o.latency.prefillMs(1, queued);
        ms += o.decodeStepMs();
      }
      if (ms < bestMs) {
        best = r;
        bestMs = ms;
      }
    }
    return best;
  }

  /** The replica holding `seq` now (a waiting request may have moved in a migration). */
  holderOf(seq: Sequence): Replica | undefined {
    return this.replicas.find((r) => r.served.waiting.includes(seq) || r.served.running.includes(seq));
  }

  /** Ends a request from outside (abort) wherever it is. */
  end(seq: Sequence, end: PendingEnd, nowMs: number): void {
    const r = this.holderOf(seq);
    if (r === undefined) return;
    r.served.end(seq, end, nowMs);
    r.device.scheduler.notify();
  }
}
