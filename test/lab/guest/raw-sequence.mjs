// Lab only: the raw baseline. Runs the agent's own start and stop sequences (as its dry run
// prints them) directly, one command after the other, and times each step and each command.
// What the agent prepares when it starts (its dry run's "prepared") runs first and untimed: a
// takeover does not run it either.
import { execFileSync, spawnSync } from 'node:child_process';

const [bundle, spec, node] = process.argv.slice(2);
const run = (commands) =>
  commands.map(({ argv }) => {
    const started = performance.now();
    const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 60_000, env: { ...process.env, LC_ALL: 'C' } });
    return { argv, ms: performance.now() - started, ...(r.status !== 0 && { failed: `${argv.join(' ')} → ${r.status}` }) };
  });
const failures = (ran) => ran.flatMap((c) => c.failed ?? []);
const result = { prepared: [] };
for (const direction of ['start', 'stop']) {
  const plan = JSON.parse(execFileSync('node', [bundle, direction, '--dry-run', '--json', '--spec', spec, '--node', node], { encoding: 'utf8' }));
  result.prepared.push(...failures(run(plan.prepared)));
  result[direction] = plan.steps.map(({ step, commands }) => {
    const started = performance.now();
    const ran = run(commands);
    return { step, ms: performance.now() - started, commands: ran.map(({ argv, ms }) => ({ argv, ms })), failed: failures(ran) };
  });
}
process.stdout.write(JSON.stringify(result));
