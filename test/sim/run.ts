/**
 * npm run sim -- [--seeds N] [--from S] [--workers W] [--bug NAME]
 * npm run sim -- --replay SEED [--bug NAME] [--trace]
 *
 * Runs the deterministic simulation over many seeds (in parallel), prints the virtual-time
 * failover distribution, and for a failing seed the replay command and a minimised fault list.
 */
import { parseArgs } from 'node:util';
import { formatFailovers, formatFault, minimizeFaults, runSeeds } from './runner.ts';
import { PLANTED_BUGS, type PlantedBug, simulate } from './world.ts';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1000' },
    from: { type: 'string', default: '1' },
    workers: { type: 'string' },
    bug: { type: 'string' },
    replay: { type: 'string' },
    trace: { type: 'boolean', default: false },
  },
});
const bug = values.bug as PlantedBug | undefined;
if (bug && !PLANTED_BUGS.includes(bug)) {
  console.error(`unknown bug "${bug}"; planted bugs: ${PLANTED_BUGS.join(', ')}`);
  process.exit(2);
}

if (values.replay) {
  const r = await simulate({ seed: Number(values.replay), bug, trace: values.trace });
  console.log(
    `seed ${r.seed}: ${r.violations.length === 0 ? 'no violation' : `${r.violations.length} violation(s)`}; ${r.acked} writes acknowledged; faults: ${r.faults.map(formatFault).join('; ') || 'none'}`,
  );
  for (const v of r.violations) console.log(`  ✗ ${v}`);
  process.exit(r.violations.length === 0 ? 0 : 1);
}

const started = performance.now();
const s = await runSeeds(Number(values.from), Number(values.seeds), { bug, ...(values.workers && { workers: Number(values.workers) }) });
const secs = (performance.now() - started) / 1000;
console.log(
  `${s.seeds} seeds${bug ? ` with the planted bug "${bug}"` : ''} in ${secs.toFixed(0)} s: ${s.failures.length} with violations; ${s.acked} writes acknowledged`,
);
console.log(`client-visible failovers (virtual time), by cause:\n${formatFailovers(s.failovers)}`);
for (const failure of s.failures.slice(0, 3)) {
  console.log(`\n✗ seed ${failure.seed}: ${failure.violations[0]}`);
  console.log(`  replay: npm run sim -- --replay ${failure.seed}${bug ? ` --bug ${bug}` : ''} --trace`);
  const minimal = await minimizeFaults(failure.seed, failure.faults, { bug });
  console.log(`  minimal faults (${minimal.length} of ${failure.faults.length}): ${minimal.map(formatFault).join('; ') || 'none: it fails without faults'}`);
}
process.exit(s.failures.length === 0 ? 0 : 1);
