/**
 * OpenAI's request and response shapes on one side, the Engine's `generate()` options and results
 * on the other: the two routes differ only in how the prompt is given and how a piece of output is
 * wrapped, so both go through these functions.
 * @module
 */
import { randomUUID } from 'node:crypto';

import type { GenerateOptions, GenerationChunk, GenerationResult } from '../request.js';
import type { Tokenizer } from '../tokenizer.js';
import type { ChatBody, CommonBody, CompletionBody } from './schemas.js';

/** Which route a request came through. */
export type RouteKind = 'chat' | 'completion';

/** Per-request SLO and priority from headers; the body's `fineserve` field wins where both are given. */
export interface HeaderHints {
  readonly priority?: number;
  readonly ttftMs?: number;
  readonly tpotMs?: number;
}

/** The engine options a body asks for, less the prompt, the signal and the callback. */
export function generationOptions(kind: RouteKind, body: CommonBody & { max_completion_tokens?: number | null; logprobs?: number | boolean | null; top_logprobs?: number | null }, hints: HeaderHints): Omit<GenerateOptions, 'prompt' | 'tokens' | 'messages'> {
  const o: Record<string, unknown> = { model: body.model };
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  if (maxTokens != null) o['maxTokens'] = maxTokens;
  if (body.temperature != null) o['temperature'] = body.temperature;
  if (body.top_p != null) o['topP'] = body.top_p;
  if (body.top_k != null && body.top_k > 0) o['topK'] = body.top_k;
  if (body.min_p != null) o['minP'] = body.min_p;
  if (body.seed != null) o['seed'] = body.seed;
  if (body.presence_penalty != null) o['presencePenalty'] = body.presence_penalty;
  if (body.frequency_penalty != null) o['frequencyPenalty'] = body.frequency_penalty;
  if (body.repetition_penalty != null) o['repetitionPenalty'] = body.repetition_penalty;
  if (body.stop != null) o['stop'] = body.stop;
  // Chat asks for logprobs with a flag and top_logprobs alternatives; completions with a count.
  // The engine returns the sampled token's logprob whenever logprobs > 0, so a flag asks for 1.
  const logprobs = kind === 'chat' ? (body.logprobs === true ? Math.max(1, body.top_logprobs ?? 0) : 0) : typeof body.logprobs === 'number' ? Math.max(body.logprobs, 1) : 0;
  if (logprobs > 0) o['logprobs'] = logprobs;
  const priority = body.fineserve?.priority ?? hints.priority;
  if (priority !== undefined) o['priority'] = priority;
  const ttftMs = body.fineserve?.slo?.ttft_ms ?? hints.ttftMs;
  const tpotMs = body.fineserve?.slo?.tpot_ms ?? hints.tpotMs;
  if (ttftMs !== undefined || tpotMs !== undefined) o['slo'] = { ...(ttftMs === undefined ? {} : { ttftMs }), ...(tpotMs === undefined ? {} : { tpotMs }) };
  return o as Omit<GenerateOptions, 'prompt' | 'tokens' | 'messages'>;
}

/** The prompt part of the engine options. */
export function promptOf(kind: RouteKind, body: CompletionBody | ChatBody): Pick<GenerateOptions, 'prompt' | 'tokens' | 'messages'> {
  if (kind === 'chat') {
    const messages = (body as ChatBody).messages.map((m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join('') }));
    return { messages } as Pick<GenerateOptions, 'messages'>;
  }
  const prompt = (body as CompletionBody).prompt;
  if (typeof prompt === 'string') return { prompt } as Pick<GenerateOptions, 'prompt'>;
  if (typeof prompt[0] === 'string') return { prompt: prompt[0] } as Pick<GenerateOptions, 'prompt'>;
  return { tokens: prompt as number[] } as Pick<GenerateOptions, 'tokens'>;
}

/** OpenAI's finish_reason for an engine ending (null while streaming). */
export function finishReason(r: GenerationResult['finishReason']): 'stop' | 'length' | null {
  return r === 'stop' ? 'stop' : r === 'length' ? 'length' : null;
}

/** Usage of a finished request. */
export function usage(r: GenerationResult): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.tokens.length, total_tokens: r.promptTokens + r.tokens.length };
}

/** The identity of one response: its id, creation time and model, shared by all its chunks. */
export interface ResponseId {
  readonly id: string;
  readonly created: number;
  readonly model: string;
}

export function responseId(kind: RouteKind, model: string): ResponseId {
  return { id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`, created: Math.floor(Date.now() / 1000), model };
}

const bytesOf = (text: string): number[] => [...Buffer.from(text, 'utf8')];

/** The logprobs of some output chunks in the route's shape; null when none were asked for. */
export function logprobsOf(kind: RouteKind, chunks: readonly GenerationChunk[], tokenizer: Tokenizer, textOffset = 0): unknown {
  if (chunks.length === 0 || chunks[0]!.logprob === undefined) return null;
  const piece = (id: number): string => tokenizer.decode([id]);
  if (kind === 'chat') {
    return {
      content: chunks.map((c) => {
        const token = piece(c.tokenId);
        return {
          token,
          logprob: c.logprob!,
          bytes: bytesOf(token),
          top_logprobs: (c.topLogprobs ?? []).map((t) => {
            const alt = piece(t.token);
            return { token: alt, logprob: t.logprob, bytes: bytesOf(alt) };
          }),
        };
      }),
    };
  }
  let offset = textOffset;
  const textOffsets: number[] = [];
  for (const c of chunks) {
    textOffsets.push(offset);
    offset += c.text.length;
  }
  return {
    tokens: chunks.map((c) => piece(c.tokenId)),
    token_logprobs: chunks.map((c) => c.logprob!),
    top_logprobs: chunks.map((c) => Object.fromEntries((c.topLogprobs ?? []).map((t) => [piece(t.token), t.logprob]))),
    text_offset: textOffsets,
  };
}

/** The whole response of a non-streaming request. */
export function completionResponse(kind: RouteKind, rid: ResponseId, r: GenerationResult, chunks: readonly GenerationChunk[], tokenizer: Tokenizer): unknown {
  const logprobs = logprobsOf(kind, chunks, tokenizer);
  const choice =
    kind === 'chat'
      ? { index: 0, message: { role: 'assistant', content: r.text }, logprobs, finish_reason: finishReason(r.finishReason) }
      : { index: 0, text: r.text, logprobs, finish_reason: finishReason(r.finishReason) };
  return { id: rid.id, object: kind === 'chat' ? 'chat.completion' : 'text_completion', created: rid.created, model: rid.model, choices: [choice], usage: usage(r) };
}

/** One streamed chunk: `text` (and the chunks it came from, for logprobs), or the final one with a finish reason. */
export function streamChunk(kind: RouteKind, rid: ResponseId, o: { text?: string; first?: boolean; finish?: 'stop' | 'length' | null; textOffset?: number; logprobsFrom?: { chunks: readonly GenerationChunk[]; tokenizer: Tokenizer } }): unknown {
  const logprobs = o.logprobsFrom === undefined ? null : logprobsOf(kind, o.logprobsFrom.chunks, o.logprobsFrom.tokenizer, o.textOffset);
  const finish = o.finish ?? null;
  if (kind === 'chat') {
    const delta: Record<string, string> = {};
    if (o.first === true) delta['role'] = 'assistant';
    if (o.text !== undefined) delta['content'] = o.text;
    return { id: rid.id, object: 'chat.completion.chunk', created: rid.created, model: rid.model, choices: [{ index: 0, delta, logprobs, finish_reason: finish }] };
  }
  return { id: rid.id, object: 'text_completion', created: rid.created, model: rid.model, choices: [{ index: 0, text: o.text ?? '', logprobs, finish_reason: finish }] };
}

/**
 * The SSE event of a plain text piece, serialized once per response around the text: the hot path
 * of a stream, one per token, equal to `data: ${JSON.stringify(streamChunk(...))}` for a chunk
 * without logprobs.
 */
export function textEventWriter(kind: RouteKind, rid: ResponseId): (text: string) => string {
  const marker = '\u0000TEXT\u0000';
  const shape = streamChunk(kind, rid, { text: marker });
  const [before, after] = `data: ${JSON.stringify(shape)}\n\n`.split(JSON.stringify(marker)) as [string, string];
  return (text) => before + JSON.stringify(text) + after;
}

/** The usage chunk `stream_options.include_usage` asks for: no choices, the usage. */
export function usageChunk(kind: RouteKind, rid: ResponseId, r: GenerationResult): unknown {
  return { id: rid.id, object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', created: rid.created, model: rid.model, choices: [], usage: usage(r) };
}
