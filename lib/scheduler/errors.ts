/**
 * Errors of the planner, the cost model and the simulator: bad inputs (a models or devices file,
 * a profile CSV, a workload spec) and missing reference data.
 * @module
 */
import { FineserveError } from '../errors.js';

/** Codes a {@link PlanError} carries. */
export type PlanErrorCode =
  | 'ERR_PLAN_INPUT'
  | 'ERR_PLAN_INFEASIBLE'
  | 'ERR_PROFILE_MISSING'
  | 'ERR_PROFILE_CORRUPT'
  | 'ERR_SIM_INPUT';

/**
 * A placement, profile or simulation input cannot be used. The message names the file (or
 * object), the field and the offending value, so a user can fix the input without reading code.
 */
export class PlanError extends FineserveError {
  declare readonly code: PlanErrorCode;
  /** Where the bad value came from: a file path or an object name such as `models[2]`. */
  readonly source: string;
  /** The field that was wrong, e.g. `rate`. */
  readonly field: string;

  constructor(code: PlanErrorCode, source: string, field: string, message: string) {
    super(code, `${source}: ${field}: ${message}`);
    this.source = source;
    this.field = field;
  }
}

/** Throws {@link PlanError} `ERR_PLAN_INPUT` unless `value` is a finite number > 0 (or >= 0). */
export function requirePositive(source: string, field: string, value: unknown, allowZero = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new PlanError('ERR_PLAN_INPUT', source, field, `must be a finite number ${allowZero ? '>=' : '>'} 0, got ${JSON.stringify(value)}`);
  }
  return value;
}
