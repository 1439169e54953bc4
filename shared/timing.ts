/**
 * Lease timing: the configuration, its safety checks, and the deadline math both sides use.
 *
 * Two clocks are involved and never compared with each other:
 * - the agent's monotonic clock (process.hrtime / performance.now on the node), and
 * - the control plane's monotonic clock, on which it measures how long it has seen a lease
 *   unchanged (wall time only labels events).
 * The agent only measures a duration from the moment it *sent* a successful renewal; the
 * control plane only measures a duration from the moment it *saw* it committed, which is later.
 * The checks below make the agent's deadline fall strictly before the earliest moment the
 * control plane may hand the lease to another node, for any network delay and any clock rate
 * error within `maxDriftRatio` on either side.
 */
import { z } from 'zod';

export const TIMING_DEFAULTS = {
  /**
   * The active renews (and the passive polls) twice a second: it sets how fast a dead holder
   * is noticed, and it is the main cost driver (one conditional write per renewal).
   */
  renewIntervalMs: 500,
  /**
   * 3 s: six renewal attempts per lease, so a couple of slow or lost requests (a Lambda cold
   * start, a retransmit) never cost the active its lease, while a dead holder's lease still
   * runs out well inside the 10 s budget even without early fencing.
   */
  leaseTtlMs: 3000,
  /** An agent gives up on one request after this long and tries again at the next interval. */
  requestTimeoutMs: 800,
  /**
   * 1 % rate error per clock. Real oscillators drift by ~0.01 %; the slack covers VM clocks
   * and costs only ttl × 1 % (30 ms) of the active's window.
   */
  maxDriftRatio: 0.01,
  /**
   * Time the active keeps in hand before its lease could lapse: enough to take the VIP down
   * once it decides to demote. Must also absorb the control plane's own clock drift (checked).
   */
  safetyMarginMs: 250,
  /**
   * Slack the arbiter adds before a lease counts as expired for anyone else, beyond the TTL it
   * measured itself on its monotonic clock. No wall clock enters that measurement (an NTP step
   * or a VM migration moves nothing), so this only covers a timer or a scheduler firing late.
   */
  skewAllowanceMs: 200,
  /**
   * The arbiter considers the holder silent after this long without a renewal (two missed
   * renewals). With the peer also reporting it unreachable, it fences and grants at once
   * instead of waiting for expiry: detection in 0.5–1.5 s instead of 3 s.
   */
  suspectAfterMs: 1000,
  /**
   * A passive node whose peer channel shows a healthy active (its lease being renewed) polls
   * the arbiter only this often; otherwise every renewIntervalMs. Detection rides on the free
   * peer check, so this cuts the passive's cost tenfold without slowing failover.
   */
  passivePollMs: 5000,
} as const;

const TimingFields = z.object({
  renewIntervalMs: z.number().int().min(100).max(60_000).default(TIMING_DEFAULTS.renewIntervalMs).describe('How often the active renews and the passive polls'),
  leaseTtlMs: z.number().int().min(300).max(600_000).default(TIMING_DEFAULTS.leaseTtlMs).describe('Lease duration granted by each renewal'),
  requestTimeoutMs: z.number().int().min(50).max(60_000).default(TIMING_DEFAULTS.requestTimeoutMs).describe('Agent timeout for one control-plane request'),
  maxDriftRatio: z.number().min(0).max(0.1).default(TIMING_DEFAULTS.maxDriftRatio).describe("Bound on any clock's rate error (0.01 = 1 %)"),
  safetyMarginMs: z
    .number()
    .int()
    .min(0)
    .max(60_000)
    .default(TIMING_DEFAULTS.safetyMarginMs)
    .describe('Time the active keeps in hand before its lease could lapse'),
  skewAllowanceMs: z
    .number()
    .int()
    .min(0)
    .max(60_000)
    .default(TIMING_DEFAULTS.skewAllowanceMs)
    .describe('Slack the arbiter adds to the TTL before a lease counts as expired'),
  suspectAfterMs: z
    .number()
    .int()
    .min(100)
    .max(600_000)
    .default(TIMING_DEFAULTS.suspectAfterMs)
    .describe('Silence after which the arbiter suspects the holder (early fencing)'),
  passivePollMs: z
    .number()
    .int()
    .min(100)
    .max(600_000)
    .default(TIMING_DEFAULTS.passivePollMs)
    .describe('How often a passive node polls while its peer is a healthy active'),
});

export type TimingInput = z.input<typeof TimingFields>;
export type Timing = z.output<typeof TimingFields>;

/**
 * The smallest safety margin that keeps the holder's deadline ahead of the control plane:
 * the agent's own drift is already covered by the (1 − d) factor, the control plane's by this.
 */
export function minSafetyMarginMs(leaseTtlMs: number, maxDriftRatio: number): number {
  return Math.ceil((leaseTtlMs * maxDriftRatio * (1 - maxDriftRatio)) / (1 + maxDriftRatio));
}

/** How long, on its own monotonic clock, a holder may act after sending a successful renewal. */
export function activeWindowMs(t: Timing): number {
  return t.leaseTtlMs * (1 - t.maxDriftRatio) - t.safetyMarginMs;
}

/**
 * The longest watchdog timeout this timing allows. The agent pets the watchdog after each
 * committed renewal, at most requestTimeoutMs after sending it; a node whose agent died or hung
 * must be reset before its own deadline — before the arbiter could let the peer fence it —
 * or it would go on serving clients with I/O errors from a fenced disk (seen in the lab).
 */
export function maxWatchdogTimeoutMs(t: Timing): number {
  return Math.floor(activeWindowMs(t) - t.requestTimeoutMs);
}

/** Why a watchdog with this timeout cannot guard this timing, or null if it can. */
export function watchdogProblem(timeoutSeconds: number, t: Timing): string | null {
  const max = maxWatchdogTimeoutMs(t);
  if (timeoutSeconds * 1000 <= max) return null;
  return (
    `the watchdog's timeout (${timeoutSeconds} s) is longer than this cluster's timing allows (${max} ms = leaseTtlMs × (1 − maxDriftRatio) − safetyMarginMs − requestTimeoutMs): ` +
    `a node whose agent died would still be serving when the peer fences it. Shorten it (softdog: soft_margin=${Math.max(1, Math.floor(max / 1000))}) or lengthen leaseTtlMs`
  );
}

/**
 * Unsafe or useless combinations, each with a message saying what to change. Like client-go's
 * leader election, the relations between the values matter more than the values.
 */
export function timingProblems(t: Timing): { path: keyof Timing; message: string }[] {
  const problems: { path: keyof Timing; message: string }[] = [];
  if (t.leaseTtlMs < 3 * t.renewIntervalMs) {
    problems.push({
      path: 'leaseTtlMs',
      message: `leaseTtlMs (${t.leaseTtlMs}) must be at least 3 × renewIntervalMs (${3 * t.renewIntervalMs}) so that two missed renewals do not cost the active its lease`,
    });
  }
  const minMargin = minSafetyMarginMs(t.leaseTtlMs, t.maxDriftRatio);
  if (t.safetyMarginMs < minMargin) {
    problems.push({
      path: 'safetyMarginMs',
      message: `safetyMarginMs (${t.safetyMarginMs}) must be at least ${minMargin} ms: with leaseTtlMs ${t.leaseTtlMs} and maxDriftRatio ${t.maxDriftRatio} the control plane's clock may run that much fast, and the active must stop first`,
    });
  }
  const needed = 2 * t.renewIntervalMs + t.requestTimeoutMs;
  if (activeWindowMs(t) < needed) {
    problems.push({
      path: 'leaseTtlMs',
      message: `the active's usable window leaseTtlMs × (1 − maxDriftRatio) − safetyMarginMs = ${Math.floor(activeWindowMs(t))} ms must cover a timed-out request plus two more renewal attempts (2 × renewIntervalMs + requestTimeoutMs = ${needed} ms); raise leaseTtlMs or lower the others`,
    });
  }
  if (t.requestTimeoutMs > 2 * t.renewIntervalMs) {
    problems.push({
      path: 'requestTimeoutMs',
      message: `requestTimeoutMs (${t.requestTimeoutMs}) must not exceed 2 × renewIntervalMs (${2 * t.renewIntervalMs}), or one hung request delays renewals past their interval`,
    });
  }
  if (t.suspectAfterMs < 2 * t.renewIntervalMs) {
    problems.push({
      path: 'suspectAfterMs',
      message: `suspectAfterMs (${t.suspectAfterMs}) must be at least 2 × renewIntervalMs (${2 * t.renewIntervalMs}) so that one late renewal does not look like a dead node`,
    });
  }
  if (t.passivePollMs < t.renewIntervalMs) {
    problems.push({ path: 'passivePollMs', message: `passivePollMs (${t.passivePollMs}) must be at least renewIntervalMs (${t.renewIntervalMs})` });
  }
  if (t.suspectAfterMs >= t.leaseTtlMs) {
    problems.push({
      path: 'suspectAfterMs',
      message: `suspectAfterMs (${t.suspectAfterMs}) must be below leaseTtlMs (${t.leaseTtlMs}), otherwise early fencing never fires before the lease expires anyway`,
    });
  }
  return problems;
}

/** Timing with defaults applied and every relation checked. */
export const TimingSchema = TimingFields.superRefine((t, ctx) => {
  for (const p of timingProblems(t)) ctx.addIssue({ code: 'custom', path: [p.path], message: p.message });
});

/** Holder side: the local monotonic deadline earned by a renewal sent at `sentAtMono`. */
export function activeDeadline(sentAtMono: number, t: Timing): number {
  return sentAtMono + activeWindowMs(t);
}

/** Control-plane side: expiry recorded for a lease granted or renewed at `nowCp`. */
export function leaseExpiry(nowCp: number, leaseTtlMs: number): number {
  return nowCp + leaseTtlMs;
}

/** Control-plane side: the lease may go to another node only strictly after this instant. */
export function grantableAfter(expiresAt: number, skewAllowanceMs: number): number {
  return expiresAt + skewAllowanceMs;
}

/**
 * When a dead holder is noticed, measured from its death, best and worst case. Early fencing
 * needs the holder silent for suspectAfterMs; otherwise its lease must run out (plus skew).
 * Either way the passive asks at its next poll.
 */
export function detectionWindowMs(t: Timing, earlyFencing: boolean): { min: number; max: number } {
  const wait = earlyFencing ? t.suspectAfterMs : t.leaseTtlMs + t.skewAllowanceMs;
  return { min: Math.max(0, wait - t.renewIntervalMs), max: wait + t.renewIntervalMs };
}
