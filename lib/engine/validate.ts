/**
 * Checks of user input to the engine, run before anything is queued, so a bad request fails
 * alone, at once, with an error naming the field and the value.
 * @module
 */
import { EngineError } from '../errors.js';
import type { SamplingOptions } from '../runner.js';

function bad(field: string, value: unknown, want: string): EngineError {
  return new EngineError('ERR_ENGINE_INVALID_REQUEST', `${field} = ${describe(value)}: ${want}`);
}

/** A value as an error message shows it: strings quoted, objects by their kind. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null) return String(value);
  return Object.prototype.toString.call(value);
}

/** A Jinja template string, not empty; undefined passes. */
export function checkTemplate(field: string, template: unknown): void {
  if (template !== undefined && (typeof template !== 'string' || template.trim() === '')) {
    throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `${field} must be a non-empty Jinja template string, got ${describe(template)}`);
  }
}

/** A number field in [min, max] (integer when asked); undefined passes. */
export function checkNumber(field: string, value: unknown, min: number, max: number, integer = false): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw bad(field, value, `must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`);
  }
}

/** A strictly positive number (open at 0). */
function checkPositive(field: string, value: unknown, max: number): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > max) throw bad(field, value, `must be a number above 0 and at most ${max}`);
}

/** Sampling options, with the same limits as the native sampler. */
export function checkSampling(s: SamplingOptions): void {
  checkNumber('temperature', s.temperature, 0, 100);
  checkNumber('topK', s.topK, 0, 2 ** 31 - 1, true);
  checkPositive('topP', s.topP, 1);
  checkNumber('minP', s.minP, 0, 1);
  checkPositive('repetitionPenalty', s.repetitionPenalty, 100);
  checkNumber('presencePenalty', s.presencePenalty, -2, 2);
  checkNumber('frequencyPenalty', s.frequencyPenalty, -2, 2);
  checkNumber('seed', s.seed, 0, Number.MAX_SAFE_INTEGER, true);
  checkNumber('logprobs', s.logprobs, 0, 20, true);
}

/** An SLO object: positive milliseconds where given. */
export function checkSlo(field: string, slo: { readonly ttftMs?: number; readonly tpotMs?: number } | undefined): void {
  if (slo === undefined) return;
  if (typeof slo !== 'object' || slo === null) throw bad(field, slo, 'must be an object { ttftMs?, tpotMs? }');
  checkPositive(`${field}.ttftMs`, slo.ttftMs, 1e9);
  checkPositive(`${field}.tpotMs`, slo.tpotMs, 1e9);
}

/** Token ids within the vocabulary. */
export function checkTokens(field: string, tokens: readonly number[], vocab: number): void {
  if (!Array.isArray(tokens) && !ArrayBuffer.isView(tokens)) throw bad(field, tokens, 'must be an array of token ids');
  tokens.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= vocab) throw bad(`${field}[${i}]`, t, `must be a token id from 0 to ${vocab - 1}`);
  });
}

/** `stop` as a list of non-empty strings. */
export function stopStrings(stop: string | readonly string[] | undefined): string[] {
  if (stop === undefined) return [];
  const list = typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(list)) throw bad('stop', stop, 'must be a string or an array of strings');
  list.forEach((s, i) => {
    if (typeof s !== 'string' || s.length === 0) throw bad(`stop[${i}]`, s, 'must be a non-empty string');
  });
  return [...list];
}
