// The precision table: every shorthand parses to the formats DESIGN.md gives it, names round-trip,
// and bad names or specs are typed errors naming the value.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ModelError, parsePrecision, PRECISION_NAMES, precisionName, type PrecisionSpec } from '../lib/index.js';

test('shorthands map to weight, activation and KV formats', () => {
  assert.deepEqual(parsePrecision('w8a8'), { weights: 'w8a8', activations: 'int8', kv: 'f16' });
  assert.deepEqual(parsePrecision('fp8-kv8'), { weights: 'fp8', activations: 'fp8', kv: 'fp8' });
  assert.deepEqual(parsePrecision('w4a16-kv8'), { weights: 'w4a16', activations: 'f32', kv: 'fp8', group: 128 });
  assert.deepEqual(parsePrecision('w4a8-kv4'), { weights: 'w4a8', activations: 'fp8', kv: 'int4', group: 128 });
  assert.deepEqual(parsePrecision('fp16-kvi8'), { weights: 'f16', activations: 'f32', kv: 'int8' });
  assert.deepEqual(parsePrecision('fp32'), { weights: 'f32', activations: 'f32', kv: 'f32' });
  assert.deepEqual(parsePrecision('bf16'), { weights: 'bf16', activations: 'f32', kv: 'bf16' });
  assert.deepEqual(parsePrecision('auto'), { weights: 'source', activations: 'f32', kv: 'f16' });
});

test('every listed name parses, and precisionName gives back an equivalent name', () => {
  assert.ok(PRECISION_NAMES.length === 8 * 7);
  for (const name of PRECISION_NAMES) {
    const spec = parsePrecision(name);
    const again = parsePrecision(precisionName(spec) as (typeof PRECISION_NAMES)[number]);
    assert.deepEqual(again, spec, name);
  }
});

test('specs are checked field by field', () => {
  const ok: PrecisionSpec = { weights: 'w4a16', activations: 'f32', kv: 'int4', group: 64 };
  assert.deepEqual(parsePrecision(ok), ok);
  const bad: [unknown, RegExp][] = [
    ['w3a16', /precision = "w3a16" is not a precision/],
    ['w4a16-kv2', /"w4a16-kv2"/],
    ['w4a16-kv8-x', /"w4a16-kv8-x"/],
    [{ weights: 'w5', activations: 'f32', kv: 'f16' }, /precision.weights = "w5"/],
    [{ weights: 'w8a8', activations: 'f32', kv: 'f16' }, /precision.activations = "f32": weights "w8a8" compute with "int8"/],
    [{ weights: 'w8a8', activations: 'int8', kv: 'int2' }, /precision.kv = "int2"/],
    [{ weights: 'w4a16', activations: 'f32', kv: 'f16', group: 100 }, /precision.group = 100/],
    [{ weights: 'w8a8', activations: 'int8', kv: 'f16', group: 128 }, /only w4a16 and w4a8 weights are grouped/],
  ];
  for (const [value, message] of bad) {
    assert.throws(
      () => parsePrecision(value as PrecisionSpec),
      (err: unknown) => err instanceof ModelError && err.code === 'ERR_MODEL_PRECISION' && message.test(err.message),
      String(JSON.stringify(value)),
    );
  }
});
