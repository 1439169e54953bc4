/** Runs many seeds across worker processes, and shrinks a failing seed's faults. */
import { fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { type Failover, type Fault, type SimOptions, type SimResult, simulate } from './world.ts';

export interface Summary {
  seeds: number;
  failures: SimResult[];
  failovers: Failover[];
  acked: number;
}

export async function runSeeds(
  from: number,
  count: number,
  options: Omit<SimOptions, 'seed'> & { workers?: number; stopAtFirstFailure?: boolean },
): Promise<Summary> {
  const { workers = Math.max(1, availableParallelism()), stopAtFirstFailure = false, ...simOptions } = options;
  const seeds = Array.from({ length: count }, (_, i) => from + i);
  const summary: Summary = { seeds: 0, failures: [], failovers: [], acked: 0 };
  const shares = Array.from({ length: Math.min(workers, count) }, (_, w) => seeds.filter((_, i) => i % workers === w));
  await Promise.all(
    shares.map(
      (share) =>
        new Promise<void>((resolve, reject) => {
          const child = fork(new URL('./worker.ts', import.meta.url).pathname, [], {
            execArgv: ['--import', 'tsx'],
            env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
          });
          child.on('message', (m: { result?: SimResult; done?: boolean }) => {
            if (m.result) {
              summary.seeds++;
              summary.acked += m.result.acked;
              summary.failovers.push(...m.result.failovers);
              if (m.result.violations.length > 0) {
                summary.failures.push(m.result);
                if (stopAtFirstFailure) child.kill();
              }
            }
            if (m.done) child.kill();
          });
          child.on('exit', () => resolve());
          child.on('error', reject);
          child.send({ seeds: share, options: simOptions });
        }),
    ),
  );
  summary.failures.sort((a, b) => a.seed - b.seed);
  return summary;
}

/** The smallest subset of a failing seed's faults that still fails (one fault dropped at a time). */
export async function minimizeFaults(seed: number, faults: Fault[], options: Omit<SimOptions, 'seed' | 'faults'>): Promise<Fault[]> {
  let kept = faults;
  for (let i = 0; i < kept.length;) {
    const fewer = kept.filter((_, j) => j !== i);
    if ((await simulate({ ...options, seed, faults: fewer })).violations.length > 0) kept = fewer;
    else i++;
  }
  return kept;
}

/**
 * Failovers by what caused them. With the arbiter unreachable from both nodes (an outage, a
 * restore) a takeover must wait for it by design, so those are counted apart from the rest.
 */
export type FailoverClass = 'single fault' | 'compound' | 'arbiter unreachable';

export interface ClassFigures {
  count: number;
  p50: number;
  p99: number;
  max: number;
  /** The slowest few, with the faults that made them. */
  slowest: Failover[];
}

const arbiterUnreachable = (f: Failover) => f.faults.some((k) => k.startsWith('cp-down') || k === 'store-restored');

export function classifyFailovers(failovers: Failover[]): Record<FailoverClass, ClassFigures> {
  const classOf = (f: Failover): FailoverClass => (arbiterUnreachable(f) ? 'arbiter unreachable' : f.faults.length <= 1 ? 'single fault' : 'compound');
  const figures = (list: Failover[]): ClassFigures => {
    const sorted = [...list].sort((a, b) => a.ms - b.ms);
    const ms = sorted.map((f) => f.ms);
    return { count: ms.length, p50: percentile(ms, 50), p99: percentile(ms, 99), max: ms.at(-1) ?? NaN, slowest: sorted.slice(-3).reverse() };
  };
  const classes = ['single fault', 'compound', 'arbiter unreachable'] as const;
  return Object.fromEntries(classes.map((c) => [c, figures(failovers.filter((f) => classOf(f) === c))])) as Record<FailoverClass, ClassFigures>;
}

/** One line per class, for the test's output and npm run sim. */
export function formatFailovers(failovers: Failover[]): string {
  return Object.entries(classifyFailovers(failovers))
    .map(
      ([c, f]) =>
        `${c}: ${f.count} failovers, p50 ${f.p50} ms, p99 ${f.p99} ms, max ${f.max} ms; slowest: ${f.slowest.map((s) => `${s.ms} ms (${s.faults.join(' + ') || 'no fault'})`).join(', ')}`,
    )
    .join('\n');
}

export function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function formatFault(f: Fault): string {
  return `${f.kind} on ${f.target} at ${(f.at / 1000).toFixed(1)} s for ${(f.durationMs / 1000).toFixed(1)} s`;
}
