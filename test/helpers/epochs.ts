/**
 * An epoch memory held in the test's own memory: for unit tests, and for the simulator, where
 * it plays a node's local disk (it outlives the node's crashes and its agent's restarts).
 * Production uses FileEpochMemory (agent/epoch-memory.ts) only.
 */
import type { EpochMemory, Epochs } from '../../agent/epoch-memory.ts';

export class RememberedEpochs implements EpochMemory {
  #epochs: Epochs;
  constructor(epochs: Epochs = { seen: 0, acted: 0 }) {
    this.#epochs = { ...epochs };
  }
  current(): Epochs {
    return { ...this.#epochs };
  }
  async record(update: Partial<Epochs>): Promise<void> {
    this.#epochs = { seen: Math.max(this.#epochs.seen, update.seen ?? 0), acted: Math.max(this.#epochs.acted, update.acted ?? 0) };
  }
}
