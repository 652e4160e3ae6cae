/**
 * @internal Medians of small samples (repeated timings, calibration scales), for lib and the
 * benches; the input is never reordered.
 * @module
 */

/** The median of `xs`: the mean of the two middle values for an even count; NaN when empty. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The upper median of `xs`: the middle value, the higher of the two for an even count (always one
 * of the samples, never a mean of two); NaN when empty.
 */
export function upperMedian(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1] ?? NaN;
}
