/**
 * JSON schemas of the OpenAI-compatible request bodies. Fastify validates every body against them
 * before a route runs, so a bad field is refused with a 400 naming it, and nothing reaches the
 * engine. Fields OpenAI defines that fineserve does not serve are refused (`n` other than 1,
 * `echo`, `best_of` > 1), never silently ignored.
 * @module
 */

const number = { type: 'number' } as const;
const stop = { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, maxItems: 16 }, { type: 'null' }] } as const;

/** Sampling and length fields shared by both routes (OpenAI's, plus vLLM's extras top_k, min_p, repetition_penalty). */
const sampling = {
  max_tokens: { type: ['integer', 'null'], minimum: 1 },
  temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
  top_p: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 },
  top_k: { type: ['integer', 'null'], minimum: -1 },
  min_p: { type: ['number', 'null'], minimum: 0, maximum: 1 },
  seed: { type: ['integer', 'null'], minimum: 0 },
  presence_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
  frequency_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
  repetition_penalty: { type: ['number', 'null'], exclusiveMinimum: 0 },
  stop,
  stream: { type: ['boolean', 'null'] },
  stream_options: {
    type: ['object', 'null'],
    properties: { include_usage: { type: 'boolean' } },
  },
  n: { anyOf: [{ const: 1 }, { type: 'null' }] },
  user: { type: 'string' },
  /** fineserve's own: this request's SLO (ms) and priority. */
  fineserve: {
    type: 'object',
    additionalProperties: false,
    properties: {
      priority: number,
      slo: {
        type: 'object',
        additionalProperties: false,
        properties: { ttft_ms: { type: 'number', exclusiveMinimum: 0 }, tpot_ms: { type: 'number', exclusiveMinimum: 0 } },
      },
    },
  },
} as const;

export const completionBody = {
  type: 'object',
  required: ['model', 'prompt'],
  properties: {
    model: { type: 'string', minLength: 1 },
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 1 },
        { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 },
      ],
    },
    logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
    echo: { anyOf: [{ const: false }, { type: 'null' }] },
    best_of: { anyOf: [{ const: 1 }, { type: 'null' }] },
    suffix: { type: 'null' },
    ...sampling,
  },
} as const;

const content = {
  anyOf: [
    { type: 'string' },
    {
      type: 'array',
      items: {
        type: 'object',
        required: ['type', 'text'],
        properties: { type: { const: 'text' }, text: { type: 'string' } },
      },
    },
  ],
} as const;

export const chatBody = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    model: { type: 'string', minLength: 1 },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role', 'content'],
        properties: { role: { enum: ['system', 'developer', 'user', 'assistant'] }, content, name: { type: 'string' } },
      },
    },
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
    logprobs: { type: ['boolean', 'null'] },
    top_logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
    ...sampling,
  },
} as const;

/** The body fields both routes share, as the handlers read them after validation. */
export interface CommonBody {
  readonly model: string;
  readonly max_tokens?: number | null;
  readonly temperature?: number | null;
  readonly top_p?: number | null;
  readonly top_k?: number | null;
  readonly min_p?: number | null;
  readonly seed?: number | null;
  readonly presence_penalty?: number | null;
  readonly frequency_penalty?: number | null;
  readonly repetition_penalty?: number | null;
  readonly stop?: string | string[] | null;
  readonly stream?: boolean | null;
  readonly stream_options?: { readonly include_usage?: boolean } | null;
  readonly fineserve?: { readonly priority?: number; readonly slo?: { readonly ttft_ms?: number; readonly tpot_ms?: number } };
}

export interface CompletionBody extends CommonBody {
  readonly prompt: string | [string] | number[];
  readonly logprobs?: number | null;
}

export interface ChatBody extends CommonBody {
  readonly messages: readonly { readonly role: string; readonly content: string | readonly { readonly type: 'text'; readonly text: string }[] }[];
  readonly max_completion_tokens?: number | null;
  readonly logprobs?: boolean | null;
  readonly top_logprobs?: number | null;
}
