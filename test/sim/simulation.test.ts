/**
 * The deterministic simulation in the test suite: thousands of seeded fault schedules against
 * the real control plane and agent code, every invariant checked after every event; and proof
 * that the checker can fail — planted bugs are found within a bounded number of seeds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyFailovers, formatFailovers, formatFault, runSeeds } from './runner.ts';
import { PLANTED_BUGS, simulate } from './world.ts';

const SEEDS = Number(process.env.NFSHA_SIM_SEEDS ?? 2000);
const BUG_SEED_BOUND = 300;
/**
 * Reached at default timing (virtual time). A single fault: p99 within the goal of 3 s (2.95 s
 * over these 2,000 seeds, 3.1 s over 4,000 fresh ones). Its tail, traced seed by seed: a crash or
 * a freeze just before a renewal waits out the lease (TTL 3 s from the last renewal, then the
 * takeover); an active that dies in failsafe (a renewal of its had timed out) is waited out to
 * the end of its peer's promise; a control-plane instance that had not seen the lease's last
 * version counts its quiet time from the passive's poll (instances share no clock); a lost
 * request. A promise the active no longer needed once its next renewal landed was the commonest
 * cause (p99 3.4 s) until the holder released it (shared/failsafe.ts, released). Compound faults
 * other than the arbiter's loss: under the reference story's 10 s (8.6 s here, 6.15 s over the
 * fresh seeds; 10.6 s before a restarted node that had acted under the latest epoch stopped
 * keeping out for a promise window: mayHavePromised). With the arbiter unreachable from both
 * nodes nobody may take over until it is back; world.ts checks that the survivor resumes within
 * 4 s of its return.
 */
const SINGLE_FAULT_P99_MS = 3_000;
const COMPOUND_MAX_MS = 10_000;

describe('deterministic simulation', () => {
  it(`${SEEDS} seeds of randomized faults: no invariant is ever violated`, async () => {
    const s = await runSeeds(1, SEEDS, {});
    const report = s.failures.map(
      (f) => `seed ${f.seed}: ${f.violations[0]} (faults: ${f.faults.map(formatFault).join('; ')}; replay: npm run sim -- --replay ${f.seed} --trace)`,
    );
    assert.deepEqual(report, []);
    assert.equal(s.seeds, SEEDS);
    assert.ok(s.failovers.length > SEEDS / 4, `failovers happened (${s.failovers.length})`);
    console.log(`# simulation: ${s.seeds} seeds, 0 violations, ${s.acked} acknowledged writes; client-visible failovers (virtual time), by cause:`);
    for (const line of formatFailovers(s.failovers).split('\n')) console.log(`#   ${line}`);
    const classes = classifyFailovers(s.failovers);
    assert.ok(classes['single fault'].p99 <= SINGLE_FAULT_P99_MS, `single-fault failovers: p99 ${classes['single fault'].p99} ms`);
    assert.ok(
      classes.compound.max < COMPOUND_MAX_MS,
      `compound failovers: max ${classes.compound.max} ms (${classes.compound.slowest[0]?.faults.join(' + ')})`,
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
