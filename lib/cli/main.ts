#!/usr/bin/env node
/**
 * The `fineserve` command. `fineserve demo` serves a model in three precisions side by side;
 * `fineserve devices [--json]` prints what fineserve can run on;
 * `fineserve generate ...` writes a random-weight model of a real shape.
 * @module
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { type DeviceReport, devices } from '../devices.js';
import { FineserveError } from '../errors.js';
import { DEMO_USAGE, demoCommand } from './demo.js';
import { QUANTIZE_USAGE, quantizeCommand } from './quantize.js';
import { generateModel, MODEL_SHAPES, type ModelShape } from '../generate.js';
import { PLAN_USAGE, planCommand } from './plan.js';
import { PROFILE_USAGE, profileCommand } from './profile.js';
import { SERVE_USAGE, serveCommand } from './serve.js';

const USAGE = `usage: fineserve <command> [options]

commands:
${DEMO_USAGE}
  devices [--json]   list the CPU (with the SIMD kernels in use) and the CUDA devices found
  generate --shape S --format gguf|hf --out PATH [--dtype f32|f16|bf16] [--layers N] [--vocab N] [--seed N]
                     write a random-weight model of a real shape (S: ${MODEL_SHAPES.join(', ')})
${SERVE_USAGE}
${PLAN_USAGE}
${PROFILE_USAGE}
${QUANTIZE_USAGE}

options:
  -h, --help         show this help
  -v, --version      print the version`;

const GiB = 1024 ** 3;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
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

function usageError(message: string): number {
  console.error(`${message}\n\n${USAGE}`);
  return 2;
}

/** `fineserve generate`: options in, one summary line out (progress on stderr when it is a terminal). */
async function generate(args: readonly string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        shape: { type: 'string' },
        format: { type: 'string' },
        out: { type: 'string' },
        dtype: { type: 'string' },
        layers: { type: 'string' },
        vocab: { type: 'string' },
        seed: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return usageError(`fineserve generate: ${(err as Error).message}`);
  }
  const { shape, format, out, dtype } = values;
  if (shape === undefined || format === undefined || out === undefined) {
    return usageError('fineserve generate: --shape, --format and --out are required');
  }
  if (!(MODEL_SHAPES as readonly string[]).includes(shape)) {
    return usageError(`fineserve generate: unknown shape "${shape}" (known: ${MODEL_SHAPES.join(', ')})`);
  }
  if (format !== 'gguf' && format !== 'hf') return usageError(`fineserve generate: --format must be gguf or hf`);
  if (dtype !== undefined && dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') {
    return usageError('fineserve generate: --dtype must be f32, f16 or bf16');
  }
  const integers: Record<string, number> = {};
  for (const key of ['layers', 'vocab', 'seed'] as const) {
    const text = values[key];
    if (text === undefined) continue;
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
      return usageError(`fineserve generate: --${key} must be a non-negative integer, got "${text}"`);
    }
    // 0 would mean "the shape's own" to the generator: a user who typed it meant something else.
    if (key !== 'seed' && Number(text) === 0) return usageError(`fineserve generate: --${key} must be at least 1, got 0`);
    integers[key] = Number(text);
  }
  const tty = process.stderr.isTTY;
  const result = await generateModel({
    shape: shape as ModelShape,
    format,
    out,
    ...(dtype !== undefined && { dtype }),
    ...(integers['layers'] !== undefined && { layers: integers['layers'] }),
    ...(integers['vocab'] !== undefined && { vocab: integers['vocab'] }),
    ...(integers['seed'] !== undefined && { seed: integers['seed'] }),
    ...(tty && { onProgress: (f: number) => process.stderr.write(`\rgenerating ${(f * 100).toFixed(0)}%`) }),
  });
  if (tty) process.stderr.write('\n');
  console.log(`wrote ${result.path}: ${result.parameters} parameters, ${result.bytes} bytes`);
  return 0;
}

/** Each command's lines of the usage text. */
const COMMAND_USAGE: Record<string, string> = {
  demo: DEMO_USAGE,
  serve: SERVE_USAGE,
  plan: PLAN_USAGE,
  profile: PROFILE_USAGE,
  quantize: QUANTIZE_USAGE,
};

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== undefined && (rest.includes('--help') || rest.includes('-h'))) {
    const lines = COMMAND_USAGE[command] ?? USAGE.split('\n').filter((l, i, all) => l.startsWith(`  ${command} `) || (i > 0 && all[i - 1]!.startsWith(`  ${command} `) && l.startsWith('     '))).join('\n');
    if (lines === '') return usageError(`fineserve: unknown command "${command}"`);
    console.log(`usage: fineserve\n${lines}`);
    return 0;
  }
  try {
    return await dispatch(command, rest);
  } catch (err) {
    // A bad option or value: one line naming it and the usage, exit 2; anything else fails with 1.
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('ERR_PARSE_ARGS') || code === 'ERR_CLI_USAGE') return usageError(`fineserve ${command}: ${(err as Error).message}`);
    throw err;
  }
}

async function dispatch(command: string | undefined, rest: string[]): Promise<number> {
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
  if (command === 'generate') return generate(rest);
  if (command === 'plan') return planCommand(rest);
  if (command === 'profile') return profileCommand(rest);
  if (command === 'quantize') return quantizeCommand(rest);
  if (command === 'demo') return demoCommand(rest);
  if (command === 'serve') return serveCommand(rest);
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
