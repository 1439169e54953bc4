/**
 * The deterministic simulation in the test suite: thousands of seeded fault schedules against
 * the real control plane and agent code, every invariant checked after every event; and proof
 * that the checker can fail — planted bugs are found within a bounded number of seeds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatFault, percentile, runSeeds } from './runner.ts';
import { PLANTED_BUGS, simulate } from './world.ts';

const SEEDS = Number(process.env.NFSHA_SIM_SEEDS ?? 2000);
const BUG_SEED_BOUND = 300;

describe('deterministic simulation', () => {
  it(`${SEEDS} seeds of randomized faults: no invariant is ever violated`, async () => {
    const s = await runSeeds(1, SEEDS, {});
    const report = s.failures.map(
      (f) => `seed ${f.seed}: ${f.violations[0]} (faults: ${f.faults.map(formatFault).join('; ')}; replay: npm run sim -- --replay ${f.seed} --trace)`,
    );
    assert.deepEqual(report, []);
    assert.equal(s.seeds, SEEDS);
    const f = [...s.failoversMs].sort((a, b) => a - b);
    assert.ok(f.length > SEEDS / 4, `failovers happened (${f.length})`);
    console.log(
      `# simulation: ${s.seeds} seeds, 0 violations, ${s.acked} acknowledged writes; ${f.length} client-visible failovers: p50 ${percentile(f, 50)} ms, p99 ${percentile(f, 99)} ms, max ${f.at(-1)} ms (virtual time)`,
    );
  });

  it('a seed replays exactly', async () => {
    const [a, b] = [await simulate({ seed: 42 }), await simulate({ seed: 42 })];
    assert.deepEqual(a, b);
    assert.ok(a.acked > 0);
  });

  for (const bug of PLANTED_BUGS) {
    it(`finds the planted bug "${bug}" within ${BUG_SEED_BOUND} seeds`, async () => {
      const s = await runSeeds(1, BUG_SEED_BOUND, { bug, stopAtFirstFailure: true });
      assert.ok(s.failures.length > 0, `no violation found in ${s.seeds} seeds with "${bug}" planted: the checker is blind to it`);
    });
  }

  for (const bug of ['ignore-drift', 'wall-clock-expiry'] as const) {
    it(`the world of "${bug}" without the bug is clean (the violation is the bug's)`, async () => {
      const s = await runSeeds(1, BUG_SEED_BOUND, { bugConfigOnly: bug });
      assert.deepEqual(
        s.failures.map((f) => `seed ${f.seed}: ${f.violations[0]}`),
        [],
      );
    });
  }
});
