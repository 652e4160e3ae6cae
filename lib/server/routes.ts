/**
 * The OpenAI-compatible routes as a Fastify plugin, built on the Engine's public API only:
 * `POST /v1/chat/completions`, `POST /v1/completions` (streamed as server-sent events ending in
 * `data: [DONE]`, or whole), `GET /v1/models`, `GET /health`, `GET /metrics`. Mount it in your own
 * Fastify app with `app.register(fineserveRoutes, { control })`, or take `createServer()`.
 *
 * A streamed response sends its headers with the first token, so a request refused before any
 * output (an SLO it cannot meet, a prompt the tokenizer rejects) still gets its status. A client
 * that disconnects aborts its request, which frees its KV blocks at once.
 * @module
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { GenerationChunk } from '../request.js';
import type { ServerControl } from './control.js';
import { HttpError, httpErrorOf, validationError } from './errors.js';
import { completionResponse, generationOptions, type HeaderHints, promptOf, responseId, type RouteKind, streamChunk, textEventWriter, usageChunk } from './openai-format.js';
import { type ChatBody, chatBody, type CompletionBody, completionBody } from './schemas.js';

/** Options of {@link fineserveRoutes}. */
export interface FineserveRoutesOptions {
  readonly control: ServerControl;
}

function header(request: FastifyRequest, name: string): number | undefined {
  const v = request.headers[name];
  if (typeof v !== 'string' || v.trim() === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new HttpError(400, `header ${name} = ${JSON.stringify(v)}: must be a number`, { param: name });
  return n;
}

function hintsOf(request: FastifyRequest): HeaderHints {
  const priority = header(request, 'x-fineserve-priority');
  const ttftMs = header(request, 'x-fineserve-ttft-ms');
  const tpotMs = header(request, 'x-fineserve-tpot-ms');
  return { ...(priority === undefined ? {} : { priority }), ...(ttftMs === undefined ? {} : { ttftMs }), ...(tpotMs === undefined ? {} : { tpotMs }) };
}

function sendError(reply: FastifyReply, e: HttpError): FastifyReply {
  if (e.retryAfter !== undefined) void reply.header('retry-after', String(e.retryAfter));
  return reply.code(e.status).send(e.body());
}

/** See the module comment. */
export async function fineserveRoutes(app: FastifyInstance, options: FineserveRoutesOptions): Promise<void> {
  const control = options.control;
  const engine = control.engine;

  app.setErrorHandler((err: unknown, _request, reply) => {
    const e = err as { validation?: unknown; statusCode?: number; message?: string };
    if (e.validation !== undefined) return sendError(reply, validationError(err as Parameters<typeof validationError>[0]));
    // Fastify's own client errors (a body that is not JSON, too large) keep their status.
    if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
      return sendError(reply, new HttpError(e.statusCode, e.message ?? 'bad request', { code: 'invalid_request' }));
    }
    const http = httpErrorOf(err, control.retryAfterSeconds);
    if (http.status >= 500) reply.log.error({ err }, 'request failed');
    return sendError(reply, http);
  });

  app.get('/health', async (_request, reply) => {
    const status = control.state === 'ready' ? 'ok' : control.state;
    if (control.state !== 'ready') void reply.code(503).header('retry-after', String(control.retryAfterSeconds));
    return { status, models: engine.models.length, in_flight: control.inFlight };
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await control.metrics.render();
    return reply.header('content-type', control.metrics.contentType).send(text);
  });

  app.get('/v1/models', async () => {
    const created = Math.floor(Date.now() / 1000);
    const models = control.state === 'draining' ? [] : engine.stats().models;
    return {
      object: 'list',
      data: models.map((m) => ({ id: m.id, object: 'model', created, owned_by: 'fineserve', root: m.id, max_model_len: m.maxContext, precision: m.precisionName, device: m.device })),
    };
  });

  const generate = (kind: RouteKind) => async (request: FastifyRequest, reply: FastifyReply) => {
    const body = request.body as CompletionBody | ChatBody;
    const model = body.model;
    control.metrics.requestReceived(model);
    const refuse = (e: HttpError, reason: string): never => {
      control.metrics.requestRejected(model, reason);
      throw e;
    };
    if (control.state !== 'ready') {
      refuse(new HttpError(503, control.state === 'loading' ? 'the server is loading its models' : 'the server is draining and takes no new requests', { retryAfter: control.retryAfterSeconds, code: control.state }), control.state);
    }
    if (!engine.models.includes(model)) {
      const known = engine.models.map((m) => JSON.stringify(m)).join(', ') || 'none';
      refuse(new HttpError(404, `model ${JSON.stringify(model)} does not exist (served: ${known})`, { param: 'model', code: 'model_not_found' }), 'unknown_model');
    }
    if (control.waiting(model) >= control.maxQueue) {
      refuse(new HttpError(429, `model "${model}" has ${control.waiting(model)} requests waiting, its bound; retry later`, { code: 'queue_full', retryAfter: control.retryAfterSeconds }), 'queue_full');
    }
    const abort = new AbortController();
    const chunks: GenerationChunk[] = [];
    const stream = body.stream === true;
    let started = (): void => undefined;
    // Streaming: chunks wait here until the first one decides the status; then they go straight out.
    let sink: ((c: GenerationChunk) => void) | undefined;
    let firstChunk = (): void => undefined;
    const firstArrived = new Promise<void>((resolve) => (firstChunk = resolve));
    let run;
    try {
      run = engine.generate({
        ...generationOptions(kind, body, hintsOf(request)),
        ...promptOf(kind, body),
        signal: abort.signal,
        onToken: (c: GenerationChunk) => {
          started();
          if (sink !== undefined) sink(c);
          else {
            chunks.push(c);
            firstChunk();
          }
        },
      } as Parameters<typeof engine.generate>[0]);
    } catch (err) {
      const e = httpErrorOf(err, control.retryAfterSeconds);
      return refuse(e, e.status === 413 ? 'context' : e.status === 404 ? 'unknown_model' : 'invalid');
    }
    started = control.track(model, abort, run.result).started;
    // A client gone before the end: abort, so its KV blocks are freed now.
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) abort.abort();
    });
    const rid = responseId(kind, model);
    const tokenizer = engine.tokenizer(model);

    if (!stream) {
      const r = await run.result;
      if (r.finishReason === 'abort') return reply.hijack();
      if (r.finishReason === 'error') throw httpErrorOf(r.error, control.retryAfterSeconds);
      return completionResponse(kind, rid, r, chunks, tokenizer);
    }

    await Promise.race([firstArrived, run.result]);
    if (chunks.length === 0) {
      // Ended before any output: an error gets its status; an abort has no one to answer.
      const r = await run.result;
      if (r.finishReason === 'error') throw httpErrorOf(r.error, control.retryAfterSeconds);
      if (r.finishReason === 'abort') return reply.hijack();
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    // Events go out on the next turn of the event loop, after the scheduler has started its next
    // step: the socket writes then overlap the step instead of delaying it.
    let pending = '';
    let flushing = false;
    const flush = (): void => {
      flushing = false;
      if (pending !== '' && !res.destroyed) res.write(pending);
      pending = '';
    };
    const write = (event: string): void => {
      pending += event;
      if (!flushing) {
        flushing = true;
        setImmediate(flush);
      }
    };
    const send = (o: unknown): void => write(`data: ${JSON.stringify(o)}\n\n`);
    const textEvent = textEventWriter(kind, rid);
    let textOffset = 0;
    let first = true;
    const emit = (c: GenerationChunk): void => {
      if (res.destroyed) return;
      if (c.logprob !== undefined || first) send(streamChunk(kind, rid, { text: c.text, first, textOffset, logprobsFrom: { chunks: [c], tokenizer } }));
      // An empty piece (half a UTF-8 character, a possible stop string held back) carries nothing.
      else if (c.text !== '') write(textEvent(c.text));
      first = false;
      textOffset += c.text.length;
    };
    for (const c of chunks) emit(c);
    chunks.length = 0;
    sink = emit;
    const r = await run.result;
    if (r.finishReason === 'abort') {
      flush();
      res.end();
      return reply;
    }
    if (first && kind === 'chat') send(streamChunk(kind, rid, { first: true, text: '' }));
    if (r.finishReason === 'error') {
      // Headers are gone: the error travels as an event, as vLLM sends it.
      send(httpErrorOf(r.error, control.retryAfterSeconds).body());
    } else {
      send(streamChunk(kind, rid, { finish: r.finishReason === 'stop' ? 'stop' : 'length' }));
      const options = (body as { stream_options?: { include_usage?: boolean } | null }).stream_options;
      if (options?.include_usage === true) send(usageChunk(kind, rid, r));
    }
    flush();
    if (!res.destroyed) res.end('data: [DONE]\n\n');
    return reply;
  };

  app.post('/v1/completions', { schema: { body: completionBody } }, generate('completion'));
  app.post('/v1/chat/completions', { schema: { body: chatBody } }, generate('chat'));
}
