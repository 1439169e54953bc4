/**
 * The control plane's two clocks. `now()` is wall time in ms since the Unix epoch: it labels
 * events and the lease's renewedAt/expiresAt for operators, and is never compared with a time
 * another machine wrote to decide who holds the lease. `elapsed()` is a monotonic count of ms
 * (arbitrary origin) that no clock step moves: the arbiter's lease decisions measure durations
 * on it only (see shared/lease.ts).
 */
export interface Clock {
  now(): number;
  elapsed(): number;
}

/**
 * Wall time read once, advanced by the monotonic clock: a step of the system clock while the
 * process runs (NTP correction, an operator's `date -s`) does not move the event times either.
 * Used by the long-running Node server.
 */
export function monotonicWallClock(): Clock {
  const wallAtStart = Date.now();
  const monoAtStart = performance.now();
  return { now: () => Math.floor(wallAtStart + (performance.now() - monoAtStart)), elapsed: () => performance.now() };
}

/** Lambda: each invocation reads the wall clock for labels; lease decisions use elapsed(). */
export const systemClock: Clock = { now: () => Date.now(), elapsed: () => performance.now() };
