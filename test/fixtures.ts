// Where the shared test fixtures live (read in place, never copied), with a clear failure when
// they are missing.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const STORIES = fileURLToPath(new URL('../../shared/fixtures/stories260K/', import.meta.url));

export function fixture(name: string): string {
  const path = STORIES + name;
  assert.ok(existsSync(path), `missing test fixture ${path} (the stories260K fixture is expected in ../shared/fixtures)`);
  return path;
}

export interface GoldenCase {
  prompt: string;
  prompt_ids: number[];
  greedy_ids: number[];
  last_prompt_logits_top5: [number, number][];
}

export function goldenCases(): GoldenCase[] {
  return (JSON.parse(readFileSync(fixture('golden-greedy.json'), 'utf8')) as { cases: GoldenCase[] }).cases;
}
