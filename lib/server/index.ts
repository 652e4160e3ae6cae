/**
 * `fineserve serve` as a library: an OpenAI-compatible HTTP server over an Engine, with vLLM's
 * Prometheus metrics. `createServer(engine)` gives a Fastify instance ready to `listen()`;
 * `fineserveRoutes` mounts the same routes in a Fastify app of your own.
 *
 * ```ts
 * const engine = await Engine.create();
 * await engine.loadModel({ id: 'chat', source: './model.gguf' });
 * const server = createServer(engine);
 * await server.listen({ port: 8000 });
 * // SIGTERM: stop taking requests, let those in flight finish, then stop.
 * process.once('SIGTERM', async () => { await server.fineserve.drain(30_000); await server.close(); await engine.close(); });
 * ```
 * @module
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';

import type { Engine } from '../engine.js';
import { ServerControl, type ServerControlOptions } from './control.js';
import { fineserveRoutes } from './routes.js';

export { ServerControl } from './control.js';
export type { ServerControlOptions, ServerState } from './control.js';
export { fineserveRoutes } from './routes.js';
export type { FineserveRoutesOptions } from './routes.js';
export { HttpError } from './errors.js';
export type { OpenAiErrorBody } from './errors.js';
export type { ServerMetrics } from './metrics.js';

/** Options of {@link createServer}. */
export interface ServerOptions extends ServerControlOptions {
  /** Fastify's own options (logger, bodyLimit, ...); default: no logger, 8 MiB bodies. */
  readonly fastify?: FastifyServerOptions;
}

/** A Fastify instance serving the routes, with its {@link ServerControl} as `fineserve`. */
export type FineserveServer = FastifyInstance & { readonly fineserve: ServerControl };

/** See the module comment. */
export function createServer(engine: Engine, options: ServerOptions = {}): FineserveServer {
  const app = Fastify({ bodyLimit: 8 * 2 ** 20, ...options.fastify });
  const control = new ServerControl(engine, options);
  void app.register(fineserveRoutes, { control });
  app.decorate('fineserve', control);
  return app as unknown as FineserveServer;
}
