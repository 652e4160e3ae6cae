/**
 * Chat templates: the Jinja programs Hugging Face and GGUF models ship to turn a conversation
 * into the prompt text they were trained on, rendered with @huggingface/jinja.
 * @module
 */
import { Template } from '@huggingface/jinja';

import { ModelError } from '../errors.js';

/** One turn of a conversation. */
export interface ChatMessage {
  /** Who speaks: the usual roles, or any other the template knows. */
  readonly role: 'system' | 'user' | 'assistant' | 'tool' | (string & {});
  readonly content: string;
}

/** @internal What a template is rendered with, besides the messages. */
export interface ChatTemplateContext {
  readonly bosToken: string;
  readonly eosToken: string;
  readonly addGenerationPrompt: boolean;
}

// A model renders its own template on every chat request; parsing it once matters, and the
// few templates callers pass in as overrides are kept too (bounded, oldest dropped first).
const parsed = new Map<string, Template>();
const MAX_PARSED = 16;

function compile(source: string, text: string): Template {
  let template = parsed.get(text);
  if (template !== undefined) return template;
  try {
    template = new Template(text);
  } catch (err) {
    throw new ModelError('ERR_MODEL_TOKENIZER', `${source}: the chat template cannot be parsed: ${(err as Error).message}`, { cause: err });
  }
  if (parsed.size >= MAX_PARSED) parsed.delete(parsed.keys().next().value!);
  parsed.set(text, template);
  return template;
}

/**
 * @internal `messages` rendered through `template`. Variables are those transformers passes:
 * `messages`, `bos_token`, `eos_token`, `add_generation_prompt` (and Jinja's `raise_exception`).
 * Throws `ModelError` `ERR_MODEL_TOKENIZER` with Jinja's message when the template cannot be
 * parsed or rendered (including a template's own `raise_exception`).
 */
export function renderChatTemplate(source: string, template: string, messages: readonly ChatMessage[], context: ChatTemplateContext): string {
  const compiled = compile(source, template);
  try {
    return compiled.render({
      // Copies, so a template that mutates its messages (some set keys) cannot touch the caller's.
      messages: messages.map((m) => ({ ...m })),
      bos_token: context.bosToken,
      eos_token: context.eosToken,
      add_generation_prompt: context.addGenerationPrompt,
    });
  } catch (err) {
    throw new ModelError('ERR_MODEL_TOKENIZER', `${source}: the chat template failed to render: ${(err as Error).message}`, { cause: err });
  }
}
