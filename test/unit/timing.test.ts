import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  activeDeadline,
  detectionWindowMs,
  grantableAfter,
  leaseExpiry,
  maxWatchdogTimeoutMs,
  minSafetyMarginMs,
  type Timing,
  TIMING_DEFAULTS,
  timingProblems,
  TimingSchema,
  watchdogProblem,
} from '../../shared/timing.ts';

describe('timing validation', () => {
  it('applies the documented defaults, which pass every check', () => {
    const t = TimingSchema.parse({});
    assert.deepEqual(t, { ...TIMING_DEFAULTS });
    assert.deepEqual(timingProblems(t), []);
  });

  const rejects = (input: Partial<Timing>, path: string, fragment: RegExp) => {
    const r = TimingSchema.safeParse(input);
    assert.equal(r.success, false, `expected ${JSON.stringify(input)} to be rejected`);
    const issue = r.error!.issues.find((i) => i.path.join('.') === path && fragment.test(i.message));
    assert.ok(issue, `no issue at ${path} matching ${fragment}: ${JSON.stringify(r.error!.issues)}`);
  };

  it('rejects a lease that two missed renewals would lose', () => {
    rejects({ renewIntervalMs: 1500, suspectAfterMs: 3000, leaseTtlMs: 4000 }, 'leaseTtlMs', /at least 3 × renewIntervalMs/);
  });
  it("rejects a safety margin smaller than the control plane's possible drift", () => {
    rejects({ maxDriftRatio: 0.05, safetyMarginMs: 100, leaseTtlMs: 6000 }, 'safetyMarginMs', /must be at least 272 ms/);
  });
  it('rejects a window that cannot fit a timed-out request and two more attempts', () => {
    rejects({ leaseTtlMs: 2000, safetyMarginMs: 500, requestTimeoutMs: 1000, suspectAfterMs: 1000 }, 'leaseTtlMs', /usable window/);
  });
  it('rejects a request timeout longer than two renewal intervals', () => {
    rejects({ requestTimeoutMs: 1200 }, 'requestTimeoutMs', /must not exceed 2 × renewIntervalMs/);
  });
  it('rejects suspecting the holder after a single late renewal', () => {
    rejects({ suspectAfterMs: 600 }, 'suspectAfterMs', /at least 2 × renewIntervalMs/);
  });
  it('rejects a passive poll faster than the renewal interval', () => {
    rejects({ passivePollMs: 200 }, 'passivePollMs', /at least renewIntervalMs/);
  });
  it('rejects early fencing that would never fire before expiry', () => {
    rejects({ suspectAfterMs: 3000 }, 'suspectAfterMs', /must be below leaseTtlMs/);
  });
  it('rejects values out of range and of the wrong type', () => {
    assert.equal(TimingSchema.safeParse({ renewIntervalMs: 10 }).success, false);
    assert.equal(TimingSchema.safeParse({ maxDriftRatio: 0.5 }).success, false);
    assert.equal(TimingSchema.safeParse({ leaseTtlMs: '3000' }).success, false);
    assert.equal(TimingSchema.safeParse({ leaseTtlMs: 3000.5 }).success, false);
  });

  it('gives the detection window of the defaults: 0.5–1.5 s with early fencing, 2.7–3.7 s without', () => {
    const t = TimingSchema.parse({});
    assert.deepEqual(detectionWindowMs(t, true), { min: 500, max: 1500 });
    assert.deepEqual(detectionWindowMs(t, false), { min: 2700, max: 3700 });
  });
});

/**
 * The safety property: a holder stops acting (by its own monotonic clock) strictly before any
 * control-plane instance may grant the lease to another node, for any network delay, any clock
 * rate within ±maxDriftRatio on each machine, and any offset within skewAllowanceMs between the
 * instance that recorded the renewal and the one that grants. Real time is the reference; the
 * renewal is sent at real time 0.
 */
const validTiming = fc
  .record({
    renewIntervalMs: fc.integer({ min: 100, max: 5000 }),
    ttlFactor: fc.double({ min: 3, max: 20, noNaN: true }),
    maxDriftRatio: fc.double({ min: 0, max: 0.1, noNaN: true }),
    marginExtra: fc.integer({ min: 0, max: 2000 }),
    skewAllowanceMs: fc.integer({ min: 0, max: 2000 }),
    timeoutFactor: fc.double({ min: 0.1, max: 2, noNaN: true }),
    suspectFactor: fc.double({ min: 2, max: 2.9, noNaN: true }),
  })
  .map(({ renewIntervalMs, ttlFactor, maxDriftRatio, marginExtra, skewAllowanceMs, timeoutFactor, suspectFactor }) => {
    const leaseTtlMs = Math.round(renewIntervalMs * ttlFactor);
    return {
      renewIntervalMs,
      leaseTtlMs,
      requestTimeoutMs: Math.max(50, Math.round(renewIntervalMs * timeoutFactor)),
      maxDriftRatio,
      safetyMarginMs: minSafetyMarginMs(leaseTtlMs, maxDriftRatio) + marginExtra,
      skewAllowanceMs,
      suspectAfterMs: Math.round(renewIntervalMs * suspectFactor),
      passivePollMs: 10 * renewIntervalMs,
    } satisfies Timing;
  })
  .filter((t) => TimingSchema.safeParse(t).success);

const world = fc.record({
  delayMs: fc.double({ min: 0, max: 10_000, noNaN: true }),
  agentRate: fc.double({ min: -1, max: 1, noNaN: true }),
  recorderRate: fc.double({ min: -1, max: 1, noNaN: true }),
  granterRate: fc.double({ min: -1, max: 1, noNaN: true }),
  offset: fc.double({ min: -1, max: 1, noNaN: true }),
  agentMonoAtSend: fc.double({ min: 0, max: 1e9, noNaN: true }),
  cpClockAtArrival: fc.double({ min: 1.7e12, max: 1.9e12, noNaN: true }),
});

type World = typeof world extends fc.Arbitrary<infer W> ? W : never;

/** Real times of the holder's deadline and of the earliest grant to another node. */
function simulate(t: Timing, w: World, deadline: (sentAtMono: number, t: Timing) => number) {
  const d = t.maxDriftRatio;
  const agentRate = 1 + w.agentRate * d;
  const granterRate = 1 + w.granterRate * d;
  const holderStopsAt = (deadline(w.agentMonoAtSend, t) - w.agentMonoAtSend) / agentRate;

  const arrival = w.delayMs;
  const expiresAt = leaseExpiry(w.cpClockAtArrival, t.leaseTtlMs);
  const granterClockAtArrival = w.cpClockAtArrival + w.offset * t.skewAllowanceMs;
  const threshold = grantableAfter(expiresAt, t.skewAllowanceMs);
  const othersMayHaveItAt = arrival + (threshold - granterClockAtArrival) / granterRate;
  return { holderStopsAt, othersMayHaveItAt };
}

describe('lease deadline safety (property)', () => {
  it("the holder's deadline always precedes the earliest grant to another node", () => {
    fc.assert(
      fc.property(validTiming, world, (t, w) => {
        const { holderStopsAt, othersMayHaveItAt } = simulate(t, w, activeDeadline);
        // The arbiter grants only strictly after its threshold (onHeartbeat: now > grantableAfter),
        // so a holder that stops at that very instant has stopped first.
        return holderStopsAt <= othersMayHaveItAt;
      }),
      { numRuns: 20_000 },
    );
  });

  it('a node whose agent dies just after petting the watchdog is reset before anyone may be granted the lease', () => {
    fc.assert(
      fc.property(validTiming, world, fc.double({ min: 0, max: 1, noNaN: true }), (t, w, answerFraction) => {
        const { othersMayHaveItAt } = simulate(t, w, activeDeadline);
        // The pet follows the renewal's answer, at most requestTimeoutMs after sending (agent clock).
        const petAfterSend = answerFraction * t.requestTimeoutMs;
        const resetAt = (petAfterSend + maxWatchdogTimeoutMs(t)) / (1 + w.agentRate * t.maxDriftRatio);
        return resetAt <= othersMayHaveItAt;
      }),
      { numRuns: 20_000 },
    );
  });

  it('watchdog timeouts: the defaults allow 1 s (softdog soft_margin=1), refuse the 60 s default of softdog', () => {
    const t = TimingSchema.parse({});
    assert.equal(maxWatchdogTimeoutMs(t), 1920);
    assert.equal(watchdogProblem(1, t), null);
    assert.match(watchdogProblem(60, t)!, /timeout \(60 s\) is longer than this cluster's timing allows \(1920 ms.*soft_margin=1\)/);
    assert.equal(
      watchdogProblem(4, TimingSchema.parse({ renewIntervalMs: 1000, leaseTtlMs: 6000, requestTimeoutMs: 1000, safetyMarginMs: 500, suspectAfterMs: 3000 })),
      null,
    );
  });

  it('the property catches a deadline that ignores drift (control: the check can fail)', () => {
    const ignoringDrift = (sentAt: number, t: Timing) => sentAt + t.leaseTtlMs - t.safetyMarginMs;
    const result = fc.check(
      fc.property(validTiming, world, (t, w) => {
        const { holderStopsAt, othersMayHaveItAt } = simulate(t, w, ignoringDrift);
        return holderStopsAt <= othersMayHaveItAt;
      }),
      { numRuns: 20_000, seed: 42 },
    );
    assert.equal(result.failed, true, 'a deadline without the drift factor must be found unsafe');
  });

  it('the boundary: no drift, no margin, no skew, no delay — the holder stops exactly at the grant threshold', () => {
    const t = TimingSchema.parse({
      renewIntervalMs: 100,
      leaseTtlMs: 300,
      requestTimeoutMs: 50,
      maxDriftRatio: 0,
      safetyMarginMs: 0,
      skewAllowanceMs: 0,
      suspectAfterMs: 200,
      passivePollMs: 1000,
    });
    const w = { delayMs: 0, agentRate: 0, recorderRate: 0, granterRate: 0, offset: 0, agentMonoAtSend: 0, cpClockAtArrival: 1.7e12 };
    const { holderStopsAt, othersMayHaveItAt } = simulate(t, w, activeDeadline);
    assert.equal(holderStopsAt, othersMayHaveItAt, 'equal instants: safe only because the grant must come strictly later');
  });

  it('the holder keeps a usable window: at least two renewals plus a timeout', () => {
    fc.assert(
      fc.property(validTiming, (t) => activeDeadline(0, t) >= 2 * t.renewIntervalMs + t.requestTimeoutMs),
      { numRuns: 5000 },
    );
  });
});
