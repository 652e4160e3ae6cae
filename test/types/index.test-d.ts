import { expectAssignable, expectError, expectType } from 'tsd';

import {
  type CudaDevice,
  type DeviceReport,
  devices,
  FineserveError,
  NativeLoadError,
  type NativeLoadAttempt,
  type SimdLevel,
} from 'fineserve';

const report = await devices();
expectType<DeviceReport>(report);
expectType<SimdLevel>(report.cpu.simd);
expectType<'cpu'>(report.cpu.kind);
expectType<readonly CudaDevice[]>(report.cuda);
expectType<`cuda:${number}`>(report.cuda[0]!.id);
expectType<string | null>(report.cudaStatus.runtimeVersion);
expectType<string | undefined>(report.cudaStatus.reason);
expectAssignable<SimdLevel>('avx512');
expectError<SimdLevel>('avx1024');
expectError(devices('cuda:0'));
expectError((report.cpu.logicalCores = 4));

const err = new NativeLoadError([]);
expectAssignable<FineserveError>(err);
expectType<string>(err.code);
expectType<readonly NativeLoadAttempt[]>(err.attempts);

import { KvError, type KvAllocResult, KvPool, type KvPoolStats, type KvErrorCode } from 'fineserve';

const slab = KvPool.create({ poolBytes: 1 << 30 });
expectType<'kv-slab' | 'static' | 'unified' | 'paged'>(slab.policy);
const model = slab.addModel({
  name: 'm',
  geometry: { tokensPerBlock: 16, layers: 32, kvHeads: 8, headDim: 128, format: 'fp8' },
});
expectType<number>(model);
const got = slab.alloc(model, 4);
expectType<KvAllocResult>(got);
if (got.ok) expectType<Uint32Array>(got.blocks);
else expectError(got.blocks);
expectError(slab.addModel({ name: 'x', geometry: { tokensPerBlock: 16, layers: 1, kvHeads: 1, headDim: 8, format: 'fp4' } }));
expectError(KvPool.create({ poolBytes: 1, policy: 'buddy' }));
expectType<KvPoolStats>(slab.stats());
expectType<readonly string[]>(slab.stats().byGeometry[0]!.models);
expectType<KvErrorCode>(new KvError('ERR_KV_DOUBLE_FREE', 'x').code);
expectError(new KvError('ERR_NOT_A_KV_CODE', 'x'));

import {
  Model,
  parsePrecision,
  type PerplexityResult,
  type PrecisionName,
  type PrecisionSpec,
  quantizeGguf,
  type QuantizedGguf,
} from 'fineserve';

expectAssignable<PrecisionName>('w4a16-kv8');
expectAssignable<PrecisionName>('w4a8-kv4');
expectAssignable<PrecisionName>('auto');
expectError<PrecisionName>('w4a16-kv2');
expectError<PrecisionName>('int3');
expectType<PrecisionSpec>(parsePrecision('fp8-kv8'));
expectError(parsePrecision({ weights: 'w4a16', activations: 'f32' }));
expectType<Promise<Model>>(Model.load('m.gguf', { precision: 'w4a16-kv8', calibration: { text: ['Once upon a time'] } }));
expectType<Promise<Model>>(Model.load('m.gguf', { precision: { weights: 'w8a8', activations: 'int8', kv: 'int8' } }));
expectError(Model.load('m.gguf', { precision: 'w4a16-kv9' }));
expectError(Model.load('m.gguf', { calibration: { texts: [] } }));
declare const loaded: Model;
expectType<PrecisionSpec>(loaded.precision);
expectType<Promise<PerplexityResult>>(loaded.perplexity([1, 2, 3], { kvFormat: 'int4' }));
expectError(loaded.perplexity([1, 2, 3], { kvFormat: 'int3' }));
expectType<Promise<QuantizedGguf>>(quantizeGguf('a.gguf', 'b.gguf', 'q4_0'));
expectType<Promise<QuantizedGguf>>(quantizeGguf('a.gguf', 'b.gguf', 'q4_k_m'));
expectType<Promise<QuantizedGguf>>(quantizeGguf('a.gguf', 'b.gguf', 'q6_k'));
expectError(quantizeGguf('a.gguf', 'b.gguf', 'q5_k'));

// Placement, cost model, local policies and simulator (issue #7).
import { CostModel, type IterationDecision, type LocalPolicy, type PlacementPlan, planFineServe, PlanError, saab, type SimResult, simulate } from 'fineserve/sim';

declare const costModel: CostModel;
const plan = planFineServe(costModel, { models: [{ id: 'm', family: 'llama-3.1-8b', precision: 'fp16', rate: 1 }], devices: [{ id: 'g', memoryBytes: 8e10 }] });
expectType<PlacementPlan>(plan);
expectType<number>(plan.version);
expectError(planFineServe(costModel, { models: [{ id: 'm', family: 'x', precision: 'fp16' }], devices: [] }));
expectAssignable<LocalPolicy>(saab);
expectType<readonly number[]>(({} as IterationDecision).admit);
expectAssignable<FineserveError>(new PlanError('ERR_PLAN_INPUT', 'models.json', 'rate', 'bad'));
declare const result: SimResult;
expectType<number>(result.sloAttainment);
expectType<typeof simulate>(simulate);

// The serving Engine (issue #6).
import {
  Engine,
  EngineError,
  type EngineErrorCode,
  type EngineStats,
  type FinishReason,
  type GenerationChunk,
  type GenerationResult,
  GenerationRun,
  type LoadedModelInfo,
  StreamDecoder,
  Tokenizer,
} from 'fineserve';

const engine = await Engine.create({ devices: 'auto', slabBytes: 1 << 30, threads: 2, policy: 'fineserve' });
expectError(Engine.create({ policy: 'round-robin' }));
expectError(Engine.create({ devices: 3 }));
expectType<Promise<Engine>>(Engine.create({ devices: ['cuda:0'], sharing: 'space' }));
expectError(Engine.create({ sharing: 'both' }));
expectType<Promise<LoadedModelInfo>>(
  engine.loadModel({ id: 'chat', source: 'm.gguf', precision: 'w4a16-kv8', slo: { ttftMs: 300, tpotMs: 50 }, maxContext: 2048, onProgress: (f: number) => void f }),
);
expectError(engine.loadModel({ id: 'chat', source: 'm.gguf', precision: 'w4a16-kv9' }));
expectError(engine.loadModel({ source: 'm.gguf' }));
const run = engine.generate({ model: 'chat', prompt: 'Once upon a time', maxTokens: 16, temperature: 0.7, stop: ['\n'], signal: AbortSignal.timeout(1000), onToken: (c) => expectType<GenerationChunk>(c) });
expectType<GenerationRun>(run);
expectType<GenerationRun>(engine.generate({ model: 'chat', tokens: [1, 2, 3] }));
expectType<GenerationRun>(engine.generate({ model: 'chat', messages: [{ role: 'user', content: 'hi' }], priority: 2 }));
expectError(engine.generate({ model: 'chat', prompt: 'x', tokens: [1] }));
expectError(engine.generate({ model: 'chat' , prompt: 'x', temperature: 'hot' }));
expectAssignable<AsyncIterable<GenerationChunk>>(run);
const done = await run.result;
expectType<GenerationResult>(done);
expectType<FinishReason>(done.finishReason);
expectAssignable<FinishReason>('abort');
expectError<FinishReason>('timeout');
expectType<number | undefined>(done.timings.ttftMs);
expectType<number>(done.timings.queueMs);
expectType<Error | undefined>(done.error);
expectType<EngineStats>(engine.stats());
expectType<number | undefined>(engine.stats().models[0]!.sloAttainment);
expectType<'time' | 'space'>(engine.stats().devices[0]!.sharing);
expectType<number>(engine.stats().devices[0]!.peakConcurrentSteps);
expectType<Promise<void>>(engine.unloadModel('chat', { drain: true }));
expectType<Promise<void>>(engine.close());
expectType<EngineErrorCode>(new EngineError('ERR_ENGINE_CONTEXT_EXCEEDED', 'x').code);
expectError(new EngineError('ERR_NOT_AN_ENGINE_CODE', 'x'));
declare const tok: Tokenizer;
expectType<number[]>(tok.encode('hi', { addSpecialTokens: false }));
expectType<StreamDecoder>(tok.createStreamDecoder());
expectType<string>(tok.applyChatTemplate([{ role: 'user', content: 'hi' }]));

// Several devices (issue #17): CPU partitions, placement, replicas, re-planning.
import type { EnginePlacement, PlacementEvent, PlacementMove, ReplanResult } from 'fineserve';
expectType<Promise<Engine>>(Engine.create({ devices: [{ id: 'cpu:0', threads: 1 }, 'cpu:1'], replanIntervalMs: 5000, onPlacement: (e) => expectType<PlacementEvent>(e) }));
expectError(Engine.create({ devices: [{ threads: 1 }] }));
expectType<Promise<LoadedModelInfo>>(engine.loadModel({ id: 'r', source: 'm.gguf', replicas: 2, expectedRate: 3 }));
expectType<Promise<LoadedModelInfo>>(engine.loadModel({ id: 'p', source: 'm.gguf', device: 'cpu:1' }));
expectError(engine.loadModel({ id: 'r', source: 'm.gguf', replicas: '2' }));
expectType<readonly string[]>((await engine.loadModel({ id: 'q', source: 'm.gguf' })).devices);
expectType<EnginePlacement>(engine.placement());
expectType<string>(engine.placement().models[0]!.replicas[0]!.reason);
expectType<Promise<ReplanResult>>(engine.replan());
expectType<readonly PlacementMove[]>((await engine.replan()).moves);
expectType<Promise<void>>(engine.migrate('r', 'cpu:1', { from: 'cpu:0' }));
expectType<number>(engine.stats().models[0]!.rate.ewmaPerSecond);
expectType<'serving' | 'draining'>(engine.stats().models[0]!.replicas[0]!.state);

// The main export is what a serving user needs; the reproduction tooling is behind fineserve/sim.
import * as main from 'fineserve';
expectError(main.planFineServe);
expectError(main.simulate);

// The HTTP server (issue #21).
import { createServer, fineserveRoutes, ServerControl, type FineserveServer } from 'fineserve/server';
import { Engine as ServedEngine } from 'fineserve';
declare const engineForServer: ServedEngine;
const server = createServer(engineForServer, { maxQueue: 16, retryAfterSeconds: 2 });
expectAssignable<FineserveServer>(server);
expectType<ServerControl>(server.fineserve);
expectType<Promise<{ finished: number; aborted: number }>>(server.fineserve.drain(1000));
expectType<'loading' | 'ready' | 'draining'>(server.fineserve.state);
expectError(createServer(engineForServer, { maxQueue: '16' }));
expectType<typeof fineserveRoutes>(fineserveRoutes);

// Internals stay out of the published types (#16 item 17): a run is made and fed by the engine only,
// and a Model's addon handle is not part of its API.
expectError(run.push({ text: '', tokenId: 1, index: 0 }));
expectError(run.finish);
expectError(new GenerationRun(1));
declare const someModel: import('fineserve').Model;
expectError(someModel.native);
