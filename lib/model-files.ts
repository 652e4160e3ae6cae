/**
 * Before a load touches a model's files: each must be a regular file (or, for a Hugging Face
 * model, the folder), checked asynchronously. A FIFO, a socket or a device would block whatever
 * reads it (the addon's open(), the tokenizer's read) forever, ignoring the AbortSignal; it is
 * refused here with a typed error naming it.
 * @module
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

import { ModelError } from './errors.js';

/** The files of a Hugging Face folder that a load reads, besides the weight shards. */
const FOLDER_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'model.safetensors.index.json'];

function kind(s: Awaited<ReturnType<typeof stat>>): string {
  if (s.isFIFO()) return 'a FIFO';
  if (s.isSocket()) return 'a socket';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

function aborted(source: string, signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new ModelError('ERR_MODEL_CANCELLED', `loading ${source} was aborted before it started`, { cause: signal.reason });
}

/** Throws ModelError naming the first file of `source` that is not a regular file. */
export async function checkModelFiles(source: string, signal?: AbortSignal): Promise<void> {
  if (typeof source !== 'string' || source === '') throw new ModelError('ERR_MODEL_NOT_FOUND', `source = ${JSON.stringify(source)}: expected the path of a .gguf file or a Hugging Face folder`);
  aborted(source, signal);
  let top;
  try {
    top = await stat(source);
  } catch {
    // The addon names a missing path with its own error; nothing here would block on it.
    return;
  }
  aborted(source, signal);
  if (top.isFile()) return;
  if (!top.isDirectory()) throw new ModelError('ERR_MODEL_CORRUPT', `${source}: ${kind(top)}, not a model file; give a .gguf file or a Hugging Face folder`);
  const names = new Set(await readdir(source));
  for (const name of [...FOLDER_FILES, ...[...names].filter((n) => n.endsWith('.safetensors'))]) {
    if (!names.has(name)) continue;
    const path = join(source, name);
    const s = await stat(path).catch(() => undefined);
    aborted(source, signal);
    if (s !== undefined && !s.isFile()) throw new ModelError('ERR_MODEL_CORRUPT', `${path}: ${kind(s)}, not a regular file`);
  }
}
