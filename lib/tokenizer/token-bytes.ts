/**
 * Which tokens stand for raw bytes rather than text, so a stream can tell whether the tokens so
 * far stop inside a UTF-8 character: `<0xNN>` pieces under a ByteFallback decoder, every piece
 * under a ByteLevel one.
 * @module
 */
import { fromByteLevel } from './byte-level.js';
import { endsInsideUtf8Char } from './utf8-tail.js';

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

function decoderTypes(decoder: unknown, into: Set<string>): Set<string> {
  if (decoder !== null && typeof decoder === 'object') {
    const d = decoder as { type?: unknown; decoders?: unknown };
    if (typeof d.type === 'string') into.add(d.type);
    if (Array.isArray(d.decoders)) for (const inner of d.decoders) decoderTypes(inner, into);
  }
  return into;
}

/**
 * @internal A test for "do these ids stop inside a UTF-8 character?" for a tokenizer with the
 * given tokenizer.json `decoder`. `tokenOf` gives an id's piece; added tokens are always text.
 */
export function utf8TailCheck(decoder: unknown, tokenOf: (id: number) => string | undefined, isAdded: (id: number) => boolean): (ids: readonly number[]) => boolean {
  const types = decoderTypes(decoder, new Set());
  const byteLevel = types.has('ByteLevel');
  const byteFallback = types.has('ByteFallback');
  if (!byteLevel && !byteFallback) return () => false;

  // Bytes of one token, or undefined when it is text (which always ends a character).
  const bytesOf = (id: number): readonly number[] | undefined => {
    const token = tokenOf(id);
    if (token === undefined || isAdded(id)) return undefined;
    if (byteLevel) return fromByteLevel(token);
    const m = BYTE_PIECE.exec(token);
    return m === null ? undefined : [parseInt(m[1]!, 16)];
  };

  return (ids) => {
    // Only the last 4 bytes matter, and nothing before the last text token.
    const tail: number[] = [];
    for (let i = ids.length - 1; i >= 0 && tail.length < 4; i--) {
      const bytes = bytesOf(ids[i]!);
      if (bytes === undefined) break;
      tail.unshift(...bytes.slice(-4));
    }
    return endsInsideUtf8Char(tail.slice(-4));
  };
}
