/**
 * BOS/EOS policy shared by the tokenizer sources: the post-processor that adds them, and which
 * tokens end a generation.
 * @module
 */
import type { AddedTokenJson } from './spec.js';

/**
 * @internal A `TemplateProcessing` post-processor that puts `bos` before and `eos` after each
 * text, as transformers' Llama tokenizer builds from `add_bos_token`/`add_eos_token`. The
 * tokens are given by text because the tokenizer library maps them through its vocabulary.
 */
export function bosEosPostProcessor(bos: string | undefined, eos: string | undefined): Record<string, unknown> {
  const around = (sequence: 'A' | 'B', typeId: number): unknown[] => [
    ...(bos === undefined ? [] : [{ SpecialToken: { id: bos, type_id: typeId } }]),
    { Sequence: { id: sequence, type_id: typeId } },
    ...(eos === undefined ? [] : [{ SpecialToken: { id: eos, type_id: typeId } }]),
  ];
  return { type: 'TemplateProcessing', single: around('A', 0), pair: [...around('A', 0), ...around('B', 1)] };
}

/**
 * Texts of tokens that end a turn in well-known chat formats. llama.cpp treats these as
 * end-of-generation whatever the file's eos id says, because many instruct conversions keep
 * the base model's EOS while the chat template closes each turn with one of these.
 */
const END_OF_TURN_TEXTS: ReadonlySet<string> = new Set([
  '<|eot_id|>',
  '<|eom_id|>',
  '<|im_end|>',
  '<|end|>',
  '<end_of_turn>',
  '<|endoftext|>',
  '<|end_of_text|>',
  '<EOT>',
  '<｜end▁of▁sentence｜>',
]);

/**
 * @internal End-of-generation ids: `named` (EOS first, then eot/eom ids the files give) followed
 * by the special tokens whose text is a well-known end of turn, without duplicates.
 */
export function endOfGenerationIds(named: readonly (number | undefined)[], added: readonly AddedTokenJson[]): number[] {
  const ids = new Set<number>();
  for (const id of named) if (id !== undefined) ids.add(id);
  for (const t of added) if (t.special && END_OF_TURN_TEXTS.has(t.content)) ids.add(t.id);
  return [...ids];
}
