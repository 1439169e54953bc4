/** Control-plane time in ms since the Unix epoch; lease expiry is recorded on this clock. */
export interface Clock {
  now(): number;
}

/**
 * Wall time read once, advanced by the monotonic clock: a step of the system clock while the
 * process runs (NTP correction, an operator's `date -s`) cannot make a lease expire early.
 * Used by the long-running Node server. Lambda instances read the wall clock, which AWS keeps
 * synchronised; `skewAllowanceMs` covers any disagreement between instances.
 */
export function monotonicWallClock(): Clock {
  const wallAtStart = Date.now();
  const monoAtStart = performance.now();
  return { now: () => Math.floor(wallAtStart + (performance.now() - monoAtStart)) };
}

export const systemClock: Clock = { now: () => Date.now() };
