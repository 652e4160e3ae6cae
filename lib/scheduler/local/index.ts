/**
 * The local scheduler's policies by name, for drivers that pick one from configuration.
 * @module
 */
import { fcfs } from './fcfs.js';
import { fineserveLocal } from './fineserve.js';
import { prismLocal, saab } from './saab.js';
import type { LocalPolicy } from './types.js';

/** Names of the local policies. */
export type LocalPolicyName = 'fineserve' | 'saab' | 'prism' | 'fcfs';

/** Every local policy by name. */
export const LOCAL_POLICIES: Readonly<Record<LocalPolicyName, LocalPolicy>> = {
  fineserve: fineserveLocal,
  saab,
  prism: prismLocal,
  fcfs,
};

export { fcfs } from './fcfs.js';
export { cheapestVictim, fineserveLocal, fineserveLocalWith, type FineServeLocalOptions } from './fineserve.js';
export { prismLocal, saab, SAAB_PREFILL_THRESHOLD } from './saab.js';
export { admittedSequence, composeStep, lastAdmitted, type StepOptions } from './engine-step.js';
export * from './types.js';
