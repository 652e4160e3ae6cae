/**
 * The worker thread of {@link TokenizerThread}: builds the tokenizer from its spec once, then
 * answers jobs one at a time. Whatever a job throws goes back as its answer; a job that never
 * ends is the main thread's to stop (it terminates this thread).
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';

import { codeOf } from '../errors.js';
import { Tokenizer } from '../tokenizer.js';
import type { IsolatedJob, IsolatedReply } from './isolated.js';
import type { TokenizerSpec } from './spec.js';

const port = parentPort!;
const tokenizer = Tokenizer.fromSpec((workerData as { spec: TokenizerSpec }).spec);

port.on('message', (job: IsolatedJob) => {
  let reply: IsolatedReply;
  try {
    const value =
      job.kind === 'encode'
        ? tokenizer.encode(job.text, { addSpecialTokens: job.addSpecialTokens })
        : tokenizer.applyChatTemplate(job.messages, { addGenerationPrompt: job.addGenerationPrompt, ...(job.template === undefined ? {} : { template: job.template }) });
    reply = { id: job.id, ok: true, value };
  } catch (err) {
    reply = { id: job.id, ok: false, code: codeOf(err), message: (err as Error).message };
  }
  port.postMessage(reply);
});
port.postMessage({ ready: true });
