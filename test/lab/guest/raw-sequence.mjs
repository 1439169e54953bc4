// Lab only: the raw baseline. Runs the agent's own start and stop sequences (as its dry run
// prints them) directly, one command after the other, and times each step and each command.
// What the agent prepares when it starts (its dry run's "prepared") runs first and untimed: a
// takeover does not run it either.
//   raw-sequence.mjs BUNDLE SPEC NODE              prepared, then start and stop: the quiet baseline
//   raw-sequence.mjs BUNDLE SPEC NODE --plan FILE  prepared, and the start plan kept in FILE, ahead of a fault
//   raw-sequence.mjs --start FILE                  that start plan, run at once after the fault: a takeover by hand
// Each step carries when it began and ended on the guest's monotonic clock, the one the lab's helper reads.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const monotonicMs = () => Number(process.hrtime.bigint() / 1000n) / 1000;
const run = (commands) =>
  commands.map(({ argv }) => {
    const started = performance.now();
    const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 60_000, env: { ...process.env, LC_ALL: 'C' } });
    return { argv, ms: performance.now() - started, ...(r.status !== 0 && { failed: `${argv.join(' ')} → ${r.status}` }) };
  });
const failures = (ran) => ran.flatMap((c) => c.failed ?? []);
const steps = (plan) =>
  plan.steps.map(({ step, commands }) => {
    const startedAt = monotonicMs();
    const ran = run(commands);
    const endedAt = monotonicMs();
    return { step, ms: endedAt - startedAt, startedAt, endedAt, commands: ran.map(({ argv, ms }) => ({ argv, ms })), failed: failures(ran) };
  });

const args = process.argv.slice(2);
if (args[0] === '--start') {
  process.stdout.write(JSON.stringify({ start: steps(JSON.parse(readFileSync(args[1], 'utf8'))) }));
} else {
  const [bundle, spec, node, flag, file] = args;
  const result = { prepared: [] };
  for (const direction of flag === '--plan' ? ['start'] : ['start', 'stop']) {
    const plan = JSON.parse(execFileSync('node', [bundle, direction, '--dry-run', '--json', '--spec', spec, '--node', node], { encoding: 'utf8' }));
    result.prepared.push(...failures(run(plan.prepared)));
    if (flag === '--plan') writeFileSync(file, JSON.stringify(plan));
    else result[direction] = steps(plan);
  }
  process.stdout.write(JSON.stringify(result));
}
