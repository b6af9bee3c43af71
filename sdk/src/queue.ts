/**
 * Items (ICE candidates, early handshake frames) that arrive before what they belong to is
 * ready: kept in arrival order, bounded, and handed over in that order once it is.
 */
export class EarlyQueue<T> {
  #items: T[] = [];
  #dropped = 0;
  readonly limit: number;

  constructor(limit = 256) {
    this.limit = limit;
  }

  /** Keeps `item`; past the limit the oldest goes (a peer flooding us costs only itself). */
  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length > this.limit) {
      this.#items.shift();
      this.#dropped += 1;
    }
  }

  /** Everything kept, oldest first; the queue is empty afterwards. */
  drain(): T[] {
    return this.#items.splice(0);
  }

  get size(): number {
    return this.#items.length;
  }

  /** How many were dropped for the limit. */
  get dropped(): number {
    return this.#dropped;
  }
}

/** Runs async tasks one after another, in the order they were given (a rejected task does not stop the next). */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T> | T): Promise<T> {
    const next = this.#tail.then(task, task);
    this.#tail = next.catch(() => undefined);
    return next;
  }
}
