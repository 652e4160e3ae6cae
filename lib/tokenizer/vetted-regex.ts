/**
 * Which tokenizers may run inline on the event loop: those whose every regex (tokenizer.json
 * `Split` and `Replace` patterns) is one of the known pre-tokenizer splits. Any other regex may
 * backtrack catastrophically (`(a+)+$` takes seconds on 30 characters), and a regex cannot be
 * interrupted in JavaScript, so such a tokenizer's texts are tokenized on its worker thread
 * under a deadline (tokenizer/isolated.ts). A vetted regex is still run inline only on short
 * texts, where even a quadratic corner of it costs milliseconds.
 * @module
 */
import { KNOWN_SPLITS } from './bpe-pretokenizers.js';
import type { TokenizerJson } from './spec.js';

const VETTED: ReadonlySet<string> = new Set(KNOWN_SPLITS);

/** @internal Every `pattern: { Regex }` under `node`, however deeply Sequence nests them. */
export function regexes(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) regexes(n, out);
  else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'Regex') out.push(typeof value === 'string' ? value : JSON.stringify(value));
      else regexes(value, out);
    }
  }
  return out;
}

/** @internal Whether every regex the tokenizer runs on input text is a vetted one. */
export function runsOnlyVettedRegexes(json: TokenizerJson): boolean {
  return [json.normalizer, json.pre_tokenizer].every((part) => regexes(part).every((r) => VETTED.has(r)));
}
