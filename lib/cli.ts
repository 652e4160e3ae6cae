#!/usr/bin/env node
/**
 * The `fineserve` command. `fineserve devices [--json]` prints what fineserve can run on.
 * @module
 */
import { readFileSync } from 'node:fs';

import { type DeviceReport, devices } from './devices.js';
import { FineserveError } from './errors.js';

const USAGE = `usage: fineserve <command> [options]

commands:
  devices [--json]   list the CPU (with the SIMD kernels in use) and the CUDA devices found

options:
  -h, --help         show this help
  -v, --version      print the version`;

const GiB = 1024 ** 3;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** The human-readable device listing. */
export function formatDevices(report: DeviceReport): string {
  const { cpu, cuda, cudaStatus, addon } = report;
  const physical = cpu.physicalCores > 0 ? ` (${cpu.physicalCores} physical)` : '';
  const lines = [
    `addon  ${addon.variant} ${addon.path}${addon.cuda ? ' [CUDA backend compiled in]' : ''}`,
    `cpu    ${cpu.model} · ${cpu.logicalCores} cores${physical} · ${(cpu.memoryBytes / GiB).toFixed(1)} GiB`,
    `       SIMD ${cpu.simd} in use (this CPU runs: ${cpu.simdSupported.join(', ')}; addon has: ${addon.simdCompiled.join(', ')})`,
  ];
  if (cpu.simdNote !== undefined) lines.push(`       note: ${cpu.simdNote}`);
  if (cuda.length === 0) {
    const runtime = cudaStatus.runtimeVersion === null ? '' : ` [CUDA runtime ${cudaStatus.runtimeVersion}]`;
    lines.push(`cuda   none: ${cudaStatus.reason ?? 'no devices'}${runtime}`);
  }
  for (const d of cuda) {
    lines.push(
      `${d.id.padEnd(6)} ${d.name} · ${(d.memoryBytes / GiB).toFixed(1)} GiB · ${d.smCount} SMs · ` +
        `sm_${d.computeCapability.replace('.', '')} · ${d.pciBusId}`,
    );
  }
  return lines.join('\n');
}

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === '-v' || command === '--version') {
    console.log(version());
    return 0;
  }
  if (command === 'devices') {
    const unknown = rest.filter((a) => a !== '--json');
    if (unknown.length > 0) {
      console.error(`fineserve devices: unknown option ${unknown.join(' ')}\n\n${USAGE}`);
      return 2;
    }
    const report = await devices();
    console.log(rest.includes('--json') ? JSON.stringify(report, null, 2) : formatDevices(report));
    return 0;
  }
  console.error(`fineserve: unknown command "${command}"\n\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof FineserveError ? err.message : err);
    process.exitCode = 1;
  },
);
