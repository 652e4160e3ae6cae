/**
 * A binary min-heap of timed events; ties break by insertion order, so runs are deterministic.
 * @module
 */

/** Min-heap keyed by (time, insertion order). */
export class EventHeap<T> {
  readonly #times: number[] = [];
  readonly #orders: number[] = [];
  readonly #items: T[] = [];
  #counter = 0;

  get size(): number {
    return this.#items.length;
  }

  /** Time of the earliest event, or Infinity. */
  peekTime(): number {
    return this.#items.length === 0 ? Infinity : this.#times[0]!;
  }

  push(time: number, item: T): void {
    this.#times.push(time);
    this.#orders.push(this.#counter++);
    this.#items.push(item);
    let i = this.#items.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(i, p)) break;
      this.#swap(i, p);
      i = p;
    }
  }

  pop(): { time: number; item: T } | undefined {
    if (this.#items.length === 0) return undefined;
    const time = this.#times[0]!;
    const item = this.#items[0]!;
    const last = this.#items.length - 1;
    this.#swap(0, last);
    this.#times.pop();
    this.#orders.pop();
    this.#items.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.#items.length && this.#less(l, m)) m = l;
      if (r < this.#items.length && this.#less(r, m)) m = r;
      if (m === i) break;
      this.#swap(i, m);
      i = m;
    }
    return { time, item };
  }

  #less(a: number, b: number): boolean {
    return this.#times[a]! < this.#times[b]! || (this.#times[a] === this.#times[b] && this.#orders[a]! < this.#orders[b]!);
  }

  #swap(a: number, b: number): void {
    [this.#times[a], this.#times[b]] = [this.#times[b]!, this.#times[a]!];
    [this.#orders[a], this.#orders[b]] = [this.#orders[b]!, this.#orders[a]!];
    [this.#items[a], this.#items[b]] = [this.#items[b]!, this.#items[a]!];
  }
}
