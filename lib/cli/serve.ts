/**
 * `fineserve serve`: the OpenAI-compatible server from the command line. Models come from a JSON
 * config (`--config models.json`), one `--model FILE` with its precision, or, given nothing, the
 * built-in demo model (generated once, no download). SIGTERM and SIGINT drain: new requests get
 * 503, those in flight finish (up to `--drain-timeout`), then the process exits 0.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

import { Engine, type EngineLoadOptions, type EngineOptions } from '../engine.js';
import { FineserveError } from '../errors.js';
import { PRECISION_NAMES, type PrecisionName } from '../precision.js';
import { createServer } from '../server/index.js';
import { demoModel } from './demo.js';

export const SERVE_USAGE = `  serve [--config models.json | --model FILE.gguf|HF-DIR [--precision P] [--id ID]]
        [--host 127.0.0.1] [--port 8000] [--threads N] [--slab-mib N] [--max-queue N] [--drain-timeout S]
                     serve models over an OpenAI-compatible HTTP API (/v1/chat/completions,
                     /v1/completions, /v1/models, /health, /metrics); with no model, the built-in demo model`;

/**
 * A ChatML template for models that bring none (the generated demo model): chat requests to them
 * still work, the way vLLM takes `--chat-template`.
 */
export const CHATML_TEMPLATE =
  "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** One model of the config file. */
export interface ServeModelConfig {
  readonly id: string;
  readonly source: string;
  readonly precision?: PrecisionName;
  readonly slo?: { readonly ttftMs?: number; readonly tpotMs?: number };
  readonly maxContext?: number;
  readonly maxBatch?: number;
  readonly dropLate?: boolean;
  /** A Jinja chat template for a model whose files bring none. */
  readonly chatTemplate?: string;
  /** One of `devices` to pin it to; default: the engine's placement chooses. */
  readonly device?: string;
  /** Exactly this many replicas (data parallel over the devices). */
  readonly replicas?: number;
  /** Requests per second expected, for placement before rates are measured. */
  readonly expectedRate?: number;
}

/** The config file: the models, and the engine's options. */
export interface ServeConfig {
  readonly models: readonly ServeModelConfig[];
  readonly devices?: EngineOptions['devices'];
  readonly threads?: number;
  readonly slabBytes?: number;
  readonly policy?: EngineOptions['policy'];
  /** With several devices, how often placement re-plans at the measured rates, ms. */
  readonly replanIntervalMs?: number;
}

function fail(message: string): never {
  throw new FineserveError('ERR_CLI_USAGE', message);
}

/** Reads and checks a config file; throws naming the file and field. */
export async function readServeConfig(path: string): Promise<ServeConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    fail(`${path}: ${(err as Error).message}`);
  }
  const c = raw as Partial<ServeConfig>;
  if (typeof c !== 'object' || c === null || !Array.isArray(c.models) || c.models.length === 0) fail(`${path}: "models" must be a non-empty array of { id, source, precision?, slo?, chatTemplate?, device?, replicas?, expectedRate? }`);
  c.models.forEach((m, i) => {
    if (typeof m !== 'object' || m === null) fail(`${path}: models[${i}] must be an object`);
    if (typeof m.id !== 'string' || m.id === '') fail(`${path}: models[${i}].id must be a non-empty string`);
    if (typeof m.source !== 'string' || m.source === '') fail(`${path}: models[${i}].source must be a path to a .gguf file or an HF folder`);
    if (m.precision !== undefined && !(PRECISION_NAMES as readonly string[]).includes(m.precision)) fail(`${path}: models[${i}].precision = ${JSON.stringify(m.precision)}: expected one of ${PRECISION_NAMES.join(', ')}`);
    if (m.chatTemplate !== undefined && typeof m.chatTemplate !== 'string') fail(`${path}: models[${i}].chatTemplate must be a string`);
  });
  return c as ServeConfig;
}

function integer(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) fail(`--${name} must be an integer from ${min} to ${max}, got "${text}"`);
  return n;
}

/** Runs `fineserve serve`; resolves with the exit code once the server has stopped. */
export async function serveCommand(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      config: { type: 'string' },
      model: { type: 'string' },
      precision: { type: 'string' },
      id: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8000' },
      threads: { type: 'string' },
      'slab-mib': { type: 'string' },
      'max-queue': { type: 'string' },
      'drain-timeout': { type: 'string', default: '30' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.config !== undefined && values.model !== undefined) fail('give --config or --model, not both');
  if (values.precision !== undefined && !(PRECISION_NAMES as readonly string[]).includes(values.precision)) fail(`--precision ${values.precision}: expected one of ${PRECISION_NAMES.join(', ')}`);
  const port = integer('port', values.port, 0, 65535)!;
  const threads = integer('threads', values.threads, 1, availableParallelism());
  const slabMiB = integer('slab-mib', values['slab-mib'], 4, 256 * 1024);
  const maxQueue = integer('max-queue', values['max-queue'], 1, 1 << 20);
  const drainS = integer('drain-timeout', values['drain-timeout'], 0, 86_400)!;
  const log = (line: string): void => void process.stderr.write(`fineserve: ${line}\n`);

  let config: ServeConfig;
  if (values.config !== undefined) config = await readServeConfig(values.config);
  else if (values.model !== undefined) config = { models: [{ id: values.id ?? 'default', source: values.model, ...(values.precision === undefined ? {} : { precision: values.precision as PrecisionName }) }] };
  else config = { models: [{ id: values.id ?? 'demo', source: await demoModel(log), precision: (values.precision as PrecisionName | undefined) ?? 'fp16', chatTemplate: CHATML_TEMPLATE }] };

  const engine = await Engine.create({
    ...(config.devices === undefined ? {} : { devices: config.devices }),
    ...(config.policy === undefined ? {} : { policy: config.policy }),
    ...((threads ?? config.threads) === undefined ? {} : { threads: threads ?? config.threads! }),
    ...(slabMiB === undefined ? (config.slabBytes === undefined ? {} : { slabBytes: config.slabBytes }) : { slabBytes: slabMiB * 2 ** 20 }),
    ...(config.replanIntervalMs === undefined ? {} : { replanIntervalMs: config.replanIntervalMs }),
    onPlacement: (e) => log(`placement (${e.cause}): ${e.placement.models.map((m) => `${m.id} on ${m.replicas.map((r) => r.device).join('+')}`).join(', ')}`),
  });
  const server = createServer(engine, { loading: true, ...(maxQueue === undefined ? {} : { maxQueue }) });
  let stopping: Promise<void> | undefined;
  const stop = (signal: string): Promise<void> =>
    (stopping ??= (async () => {
      log(`${signal}: draining (up to ${drainS} s)`);
      const { finished, aborted } = await server.fineserve.drain(drainS * 1000);
      await server.close();
      await engine.close();
      log(`stopped: ${finished} requests finished while draining, ${aborted} aborted`);
    })());
  const stopped = new Promise<void>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void stop(signal).then(resolve));
  });
  // Listen first, so /health answers 503 "loading" while the models load.
  const address = await server.listen({ host: values.host, port });
  log(`listening on ${address} (loading ${config.models.length} model(s))`);
  for (const m of config.models) {
    const info = await engine.loadModel(m as EngineLoadOptions);
    log(`model "${info.id}": ${info.precisionName} on ${info.device}, context ${info.maxContext}`);
  }
  server.fineserve.ready();
  log('ready');
  await stopped;
  return 0;
}
