/**
 * Whether a byte string stops inside a UTF-8 character: the test a streaming detokenizer needs
 * before it may hand text out.
 * @module
 */

/**
 * @internal True when `tail` (the last few bytes of a stream, up to 4) ends with the start of a
 * multi-byte UTF-8 character whose remaining bytes have not arrived yet. A tail that is complete
 * or already invalid (a stray continuation byte, a byte no UTF-8 character starts with) is not
 * incomplete: more bytes cannot turn it into a character, so waiting would only stall the stream.
 */
export function endsInsideUtf8Char(tail: readonly number[]): boolean {
  let i = tail.length - 1;
  let continuation = 0;
  while (i >= 0 && continuation < 3 && (tail[i]! & 0xc0) === 0x80) {
    continuation++;
    i--;
  }
  if (i < 0) return false;
  const lead = tail[i]!;
  const length = lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 1;
  return continuation < length - 1;
}
