/**
 * Stop strings over streamed text. Text that could be the start of a stop string is held back
 * until the next piece decides it, so a stop string never reaches the user, even split across
 * tokens, and nothing else is withheld for longer than that.
 * @module
 */

/** See the module comment. */
export class StopMatcher {
  readonly #stops: readonly string[];
  #pending = '';

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s.length > 0);
  }

  /** Adds streamed text; returns what may be shown now, and whether a stop string was reached. */
  push(text: string): { emit: string; stopped: boolean } {
    if (this.#stops.length === 0) return { emit: text, stopped: false };
    const all = this.#pending + text;
    let cut = -1;
    for (const s of this.#stops) {
      const at = all.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.#pending = '';
      return { emit: all.slice(0, cut), stopped: true };
    }
    let hold = 0;
    for (const s of this.#stops) {
      for (let k = Math.min(s.length - 1, all.length); k > hold; k--) {
        if (all.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    this.#pending = all.slice(all.length - hold);
    return { emit: all.slice(0, all.length - hold), stopped: false };
  }

  /** The held-back text, at the end of generation. */
  flush(): string {
    const rest = this.#pending;
    this.#pending = '';
    return rest;
  }
}
