/**
 * Errors in OpenAI's shape (`{ error: { message, type, param, code } }`) with the HTTP status an
 * OpenAI client maps to its typed errors: 400 invalid request (naming the field), 404 unknown
 * model, 413 prompt past the context, 429 over the queue bound or an unreachable SLO (with
 * Retry-After), 503 while loading or draining, 500 for anything unexpected.
 * @module
 */
import { FineserveError } from '../errors.js';

/** The error body OpenAI's API returns. */
export interface OpenAiErrorBody {
  readonly error: { readonly message: string; readonly type: string; readonly param: string | null; readonly code: string | null };
}

/** An error a route answers with: its status, body and headers. */
export class HttpError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  /** Seconds, for 429 and 503. */
  readonly retryAfter: number | undefined;

  constructor(status: number, message: string, o: { type?: string; param?: string | null; code?: string | null; retryAfter?: number; cause?: unknown } = {}) {
    super(message, o.cause === undefined ? undefined : { cause: o.cause });
    this.status = status;
    this.type = o.type ?? (status >= 500 ? 'server_error' : status === 429 ? 'rate_limit_error' : 'invalid_request_error');
    this.param = o.param ?? null;
    this.code = o.code ?? null;
    this.retryAfter = o.retryAfter;
  }

  body(): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** The field a fineserve validation message names first (`maxTokens = ...`), in the API's spelling. */
function paramOf(message: string): string | null {
  const field = /^([A-Za-z_][\w.[\]]*)\s*(=|:|must)/.exec(message)?.[1];
  if (field === undefined) return null;
  return field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** A fineserve error (or anything thrown) as the HTTP error to answer with. */
export function httpErrorOf(err: unknown, retryAfter: number): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof FineserveError) {
    const o = { cause: err, code: err.code };
    switch (err.code) {
      case 'ERR_ENGINE_UNKNOWN_MODEL':
        return new HttpError(404, err.message, { ...o, param: 'model', code: 'model_not_found' });
      case 'ERR_ENGINE_CONTEXT_EXCEEDED':
        return new HttpError(413, err.message, { ...o, param: 'messages', code: 'context_length_exceeded' });
      case 'ERR_ENGINE_INVALID_REQUEST':
      case 'ERR_SAMPLING_INVALID':
      case 'ERR_MODEL_TOKENIZER':
        return new HttpError(400, err.message, { ...o, param: paramOf(err.message) });
      case 'ERR_ENGINE_SLO_UNREACHABLE':
        return new HttpError(429, err.message, { ...o, code: 'slo_unreachable', retryAfter });
      case 'ERR_ENGINE_CLOSED':
      case 'ERR_ENGINE_UNLOADED':
        return new HttpError(503, err.message, { ...o, retryAfter });
      default:
        return new HttpError(500, err.message, o);
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return new HttpError(500, `internal error: ${message}`, { cause: err });
}

/** Fastify's schema-validation error as a 400 naming the field, OpenAI style. */
export function validationError(err: { message: string; validation?: readonly { instancePath?: string; params?: Record<string, unknown>; message?: string }[] }): HttpError {
  const first = err.validation?.[0];
  const path = (first?.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
  const missing = first?.params?.['missingProperty'];
  const param = typeof missing === 'string' ? (path === '' ? missing : `${path}.${missing}`) : path === '' ? null : path;
  const message = param === null ? `invalid request body: ${err.message}` : `${param}: ${first?.message ?? err.message}`;
  return new HttpError(400, message, { param, code: 'invalid_request' });
}
