/**
 * GPT-2's byte-level alphabet: every byte 0..255 as one printable character, so that byte-level
 * BPE vocabularies (GGUF `tokenizer.ggml.model = gpt2`, HF `ByteLevel`) can be read back to the
 * bytes they stand for.
 * @module
 */

function buildTables(): { byteToChar: string[]; charToByte: Map<string, number> } {
  // Printable Latin-1 bytes stand for themselves; the rest are shifted past U+0100 in byte order,
  // exactly as GPT-2's bytes_to_unicode() does (vocabularies depend on this precise mapping).
  const byteToChar = new Array<string>(256);
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    byteToChar[b] = String.fromCharCode(printable ? b : 256 + shifted++);
  }
  const charToByte = new Map(byteToChar.map((c, b) => [c, b] as const));
  return { byteToChar, charToByte };
}

const TABLES = buildTables();

/** @internal The character byte `b` is written as in a byte-level vocabulary. */
export function byteLevelChar(b: number): string {
  return TABLES.byteToChar[b]!;
}

/**
 * @internal The bytes a byte-level token stands for, or undefined when it has a character outside
 * the alphabet (added tokens are stored as plain text, not byte-level).
 */
export function fromByteLevel(token: string): number[] | undefined {
  const out: number[] = [];
  for (const c of token) {
    const b = TABLES.charToByte.get(c);
    if (b === undefined) return undefined;
    out.push(b);
  }
  return out;
}
