/** Runs many seeds across worker processes, and shrinks a failing seed's faults. */
import { fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { type Fault, type SimOptions, type SimResult, simulate } from './world.ts';

export interface Summary {
  seeds: number;
  failures: SimResult[];
  failoversMs: number[];
  acked: number;
}

export async function runSeeds(
  from: number,
  count: number,
  options: Omit<SimOptions, 'seed'> & { workers?: number; stopAtFirstFailure?: boolean },
): Promise<Summary> {
  const { workers = Math.max(1, availableParallelism()), stopAtFirstFailure = false, ...simOptions } = options;
  const seeds = Array.from({ length: count }, (_, i) => from + i);
  const summary: Summary = { seeds: 0, failures: [], failoversMs: [], acked: 0 };
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
              summary.failoversMs.push(...m.result.failoversMs);
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

export function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function formatFault(f: Fault): string {
  return `${f.kind} on ${f.target} at ${(f.at / 1000).toFixed(1)} s for ${(f.durationMs / 1000).toFixed(1)} s`;
}
