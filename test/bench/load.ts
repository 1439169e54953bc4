/** A closed-loop load: `workers` loops each awaiting `op` back to back for `seconds`. */
export interface Round {
  ops: number;
  seconds: number;
  latencies: number[];
}

export async function load(seconds: number, workers: number, op: (worker: number) => Promise<void>): Promise<Round> {
  const latencies: number[] = [];
  const started = performance.now();
  const end = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (performance.now() < end) {
        const t = performance.now();
        await op(w);
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { ops: latencies.length, seconds: (performance.now() - started) / 1000, latencies };
}

export function summarize(rounds: Round[]) {
  const all = rounds.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const pct = (p: number) => all[Math.min(all.length - 1, Math.floor((p / 100) * all.length))] ?? NaN;
  const ops = rounds.reduce((s, r) => s + r.ops, 0);
  const secs = rounds.reduce((s, r) => s + r.seconds, 0);
  return { throughput: ops / secs, p50: pct(50), p99: pct(99), ops };
}
