// Worker thread: runs the simulations it is sent and posts their summaries back.
import { parentPort } from 'node:worker_threads';

import type { SystemName } from '../../lib/sim/systems.js';
import { runOne } from './run-one.js';
import type { Scenario } from './scenarios.js';

parentPort!.on('message', (job: { index: number; scenario: Scenario; system: SystemName } | null) => {
  if (job === null) {
    process.exit(0);
  }
  parentPort!.postMessage({ index: job.index, summary: runOne(job.scenario, job.system) });
});
