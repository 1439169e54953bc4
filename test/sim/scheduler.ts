/**
 * Virtual time. Events run in time order (ties in scheduling order); after each event every
 * promise continuation it caused is run before the next event, so a run depends only on the
 * seed: no real timer or I/O ever decides an order.
 */
interface Event {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

export class Scheduler {
  now = 0;
  #queue: Event[] = [];
  #seq = 0;

  at(time: number, fn: () => void): { cancel(): void } {
    const e: Event = { at: Math.max(time, this.now), seq: this.#seq++, fn, cancelled: false };
    let i = this.#queue.length;
    while (i > 0 && (this.#queue[i - 1]!.at > e.at || (this.#queue[i - 1]!.at === e.at && this.#queue[i - 1]!.seq > e.seq))) i--;
    this.#queue.splice(i, 0, e);
    return { cancel: () => void (e.cancelled = true) };
  }

  after(delay: number, fn: () => void): { cancel(): void } {
    return this.at(this.now + delay, fn);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.after(ms, resolve));
  }

  /** Runs events up to `until`, calling `check` after each one (and its continuations). */
  async run(until: number, check: () => void): Promise<void> {
    while (this.#queue.length > 0 && this.#queue[0]!.at <= until) {
      const e = this.#queue.shift()!;
      if (e.cancelled) continue;
      this.now = e.at;
      e.fn();
      await settle();
      check();
    }
    this.now = until;
  }
}

/** Lets every pending promise continuation run (all of them are microtasks here). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
