import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type Decision,
  type Heartbeat,
  type Lease,
  leaseState,
  leaseTerms,
  onFencingConfirmed,
  onHeartbeat,
  onRelease,
  phaseEvent,
  requestSwitchover,
  setMaintenance,
  setStandby,
  updateTerms,
  vacantLease,
} from '../../shared/lease.ts';
import { ClusterSpecSchema } from '../../shared/spec.ts';
import { exampleSpec } from '../helpers/control-plane.ts';

const T0 = 1_800_000_000_000;
const A = 'node-a';
const B = 'node-b';
const passive: Heartbeat = { role: 'passive', epoch: 0 };
let fresh: Lease;
let KEY_A: string;
let KEY_B: string;

before(async () => {
  const spec = ClusterSpecSchema.parse(await exampleSpec());
  fresh = vacantLease(spec.id, leaseTerms(spec, 1), T0);
  [KEY_A, KEY_B] = fresh.terms.keys;
});

/**
 * A heartbeat decided by an arbiter that has watched the lease since its last write: its quiet
 * time is the time since that write (a grant, renewal or release; the latest of them).
 */
function beat(l: Lease, node: string, hb: Heartbeat, now: number): Decision {
  return onHeartbeat(l, node, hb, now, now - Math.max(l.renewedAt, l.holder === null ? l.expiresAt : 0));
}

function committed(d: Decision): Lease {
  assert.ok(d.next, `expected a write, got directive ${JSON.stringify(d.directive)}`);
  return d.next;
}
/** The lease a change wrote (a rejection or no write fails the test). */
function changed(r: { code: string } | { next: Lease | null }): Lease {
  assert.ok(!('code' in r) && r.next, `expected a write, got ${JSON.stringify(r)}`);
  return r.next;
}

/** A holds epoch 1 with fencing confirmed, renewed at `at`. */
function heldByA(at = T0): Lease {
  const granted = committed(beat(fresh, A, passive, at));
  const r = onFencingConfirmed(granted, A, { epoch: 1, keys: [KEY_B] }, at);
  assert.ok(!('code' in r) && r.next);
  return r.next;
}

describe('lease: acquisition and renewal', () => {
  it("cold start: the first node to ask gets epoch 1 and must fence its peer's key first", () => {
    const d = beat(fresh, A, passive, T0);
    const l = committed(d);
    assert.equal(l.holder, A);
    assert.equal(l.epoch, 1);
    assert.equal(l.version, 1);
    assert.equal(l.expiresAt, T0 + 3000);
    assert.deepEqual(d.directive, {
      action: 'activate',
      epoch: 1,
      fence: { victim: null, keys: [KEY_B], confirmed: false },
      reason: `granted epoch 1 (cold-start): preempt ${KEY_B}, report it, then activate`,
    });
    assert.deepEqual(
      l.outbox.map((e) => e.id),
      ['e1.1.lease.granted', 'e1.2.fencing.decided'],
    );
    assert.equal(leaseState(l, T0), 'fencing');
  });

  it('the second node stays passive while the lease is held', () => {
    const l = committed(beat(fresh, A, passive, T0));
    const d = beat(l, B, passive, T0 + 10);
    assert.equal(d.next, null);
    assert.equal(d.directive.action, 'stay-passive');
    assert.match(d.directive.reason, /node-a holds epoch 1, renewed 10 ms ago/);
  });

  it('renewal keeps the epoch, bumps the version and extends expiry from now', () => {
    const l = heldByA();
    const d = beat(l, A, { role: 'active', epoch: 1 }, T0 + 500);
    const n = committed(d);
    assert.equal(n.epoch, 1);
    assert.equal(n.version, l.version + 1);
    assert.equal(n.renewedAt, T0 + 500);
    assert.equal(n.expiresAt, T0 + 3500);
    assert.deepEqual(d.directive, { action: 'stay-active', epoch: 1, reason: 'renewed: holder of epoch 1' });
    assert.equal(n.outbox.length, l.outbox.length, 'a renewal records no event');
    // The store writes the fields that are not the same object: a renewal's are three.
    const written = (Object.keys(n) as (keyof Lease)[]).filter((k) => n[k] !== l[k]);
    assert.deepEqual(written, ['version', 'renewedAt', 'expiresAt']);
  });

  it('new terms: taken once per spec version, never other nodes; a shorter TTL never moves a recorded expiry earlier', () => {
    const l = heldByA();
    const terms = { ...l.terms, leaseTtlMs: 2000, specVersion: 2 };
    const r = updateTerms(l, terms, T0 + 100);
    assert.ok(!('code' in r) && r.next);
    assert.equal(r.next.terms.leaseTtlMs, 2000);
    assert.deepEqual(r.next.outbox.map((e) => e.type).slice(-1), ['spec.updated']);
    assert.deepEqual(updateTerms(r.next, terms, T0 + 200), { next: null }, 'the same version again changes nothing');
    const other = updateTerms(l, { ...terms, nodes: [A, 'node-c'] }, T0 + 100);
    assert.ok('code' in other && other.code === 'immutable_field');
    // Renewed 100 ms after the change: under 2000 ms it would lapse before the 3000 ms it had.
    const renewed = committed(beat(r.next, A, { role: 'active', epoch: 1 }, T0 + 100));
    assert.equal(renewed.expiresAt, T0 + 3000);
    assert.equal(committed(beat(renewed, A, { role: 'active', epoch: 1 }, T0 + 1500)).expiresAt, T0 + 3500);
  });

  it('a holder that restarted (reports passive) is told to activate again, fencing already confirmed', () => {
    const d = beat(heldByA(), A, passive, T0 + 500);
    assert.equal(d.directive.action, 'activate');
    assert.ok(d.directive.action === 'activate' && d.directive.fence.confirmed);
  });

  it('a holder whose lease lapsed but was not taken renews it under the same epoch', () => {
    const n = committed(beat(heldByA(), A, passive, T0 + 60_000));
    assert.equal(n.holder, A);
    assert.equal(n.epoch, 1);
  });
});

describe('lease: takeover', () => {
  it('the peer cannot take the lease before expiry plus the skew allowance', () => {
    const l = heldByA();
    const lastSafe = l.expiresAt + l.terms.skewAllowanceMs;
    assert.equal(beat(l, B, passive, lastSafe).next, null);
    assert.equal(leaseState(l, lastSafe), 'held');
    const d = beat(l, B, passive, lastSafe + 1);
    const n = committed(d);
    assert.equal(n.holder, B);
    assert.equal(n.epoch, 2);
    assert.deepEqual(n.fencing, { epoch: 2, holder: B, victim: A, keys: [KEY_A], reason: 'lease-expired', decidedAt: lastSafe + 1, confirmedAt: null });
    assert.equal(d.directive.action, 'activate');
  });

  it('early fencing: holder silent to the arbiter and unreachable from the peer', () => {
    const l = heldByA();
    const silent = T0 + l.terms.suspectAfterMs + 1;
    const n = committed(beat(l, B, { role: 'passive', epoch: 0, peer: { reachable: false } }, silent));
    assert.equal(n.epoch, 2);
    assert.equal(n.fencing?.reason, 'holder-silent');
    assert.equal(n.fencing?.victim, A);
    assert.ok(silent < l.expiresAt, 'granted before the old lease expired');
  });

  it('no early fencing on one kind of evidence alone, or with the policy off', () => {
    const l = heldByA();
    const silent = T0 + l.terms.suspectAfterMs + 1;
    const unreachable: Heartbeat = { role: 'passive', epoch: 0, peer: { reachable: false } };
    assert.equal(beat(l, B, unreachable, T0 + l.terms.suspectAfterMs).next, null, 'not yet silent long enough');
    const reachable = beat(l, B, { role: 'passive', epoch: 0, peer: { reachable: true } }, silent);
    assert.equal(reachable.next, null, 'the peer still reaches the holder');
    assert.match(reachable.directive.reason, /this node still reaches it/);
    assert.equal(beat(l, B, passive, silent).next, null, 'the peer did not check');
    const off = { ...l, terms: { ...l.terms, earlyFencing: false } };
    assert.equal(beat(off, B, unreachable, silent).next, null, 'policy off');
  });

  it('a node that thinks it is active without the lease is told to demote', () => {
    const l = committed(beat(heldByA(), B, passive, T0 + 3201));
    const d = beat(l, A, { role: 'active', epoch: 1 }, T0 + 3300);
    assert.equal(d.next, null);
    assert.equal(d.directive.action, 'demote');
    assert.match(d.directive.reason, /node-b holds epoch 2.*reports active under epoch 1 without the lease: demote/);
  });
});

describe('lease: reports', () => {
  it('fencing confirmation is accepted only from the holder for its epoch, and only once', () => {
    const granted = committed(beat(fresh, A, passive, T0));
    assert.deepEqual(onFencingConfirmed(granted, B, { epoch: 1, keys: [] }, T0), {
      code: 'stale_epoch',
      message: 'epoch 1 of node-b is not current: node-a holds epoch 1',
    });
    assert.equal((onFencingConfirmed(granted, A, { epoch: 2, keys: [] }, T0) as { code: string }).code, 'stale_epoch');
    const first = onFencingConfirmed(granted, A, { epoch: 1, keys: [KEY_B], durationMs: 120 }, T0 + 5);
    assert.ok(!('code' in first) && first.next);
    assert.equal(first.next.fencing?.confirmedAt, T0 + 5);
    assert.equal(first.next.outbox.at(-1)?.id, 'e1.3.fencing.confirmed');
    assert.deepEqual(onFencingConfirmed(first.next, A, { epoch: 1, keys: [KEY_B] }, T0 + 9), { next: null });
  });

  it('release: the releasing node gives the peer the first claim for one TTL', () => {
    const l = heldByA();
    assert.equal((onRelease(l, B, { epoch: 1, reason: 'switchover' }, T0) as { code: string }).code, 'stale_epoch');
    const vacant = changed(onRelease(l, A, { epoch: 1, reason: 'resource-failure' }, T0 + 100));
    assert.equal(vacant.holder, null);
    assert.equal(vacant.epoch, 1, 'releasing does not change the epoch');
    assert.equal(leaseState(vacant, T0 + 100), 'vacant');
    assert.deepEqual(onRelease(vacant, A, { epoch: 1, reason: 'switchover' }, T0 + 150), { next: null }, 'asked again (a renewal answered during its demotion): nothing changes');
    assert.equal((onRelease(vacant, B, { epoch: 1, reason: 'switchover' }, T0 + 150) as { code: string }).code, 'stale_epoch', 'only by the node that released it');
    const back = beat(vacant, A, passive, T0 + 100 + vacant.terms.leaseTtlMs);
    assert.equal(back.next, null);
    assert.match(back.directive.reason, /the peer has the first claim/);
    const peer = committed(beat(vacant, B, passive, T0 + 200));
    assert.equal(peer.epoch, 2);
    assert.equal(peer.fencing?.reason, 'released');
    assert.equal(peer.fencing?.victim, null);
    assert.deepEqual(peer.fencing?.keys, [KEY_A]);
    const later = committed(beat(vacant, A, passive, T0 + 101 + vacant.terms.leaseTtlMs));
    assert.equal(later.holder, A);
    assert.equal(later.epoch, 2);
  });

  it('switchover: the holder is told to release while renewing, and the target takes the lease with fencing', () => {
    const l = heldByA();
    const asked = requestSwitchover(l, B, T0 + 50);
    assert.ok(!('code' in asked) && asked.next);
    assert.deepEqual(asked.next.switchover, { to: B, requestedAt: T0 + 50 });
    assert.equal(asked.next.outbox.at(-1)?.type, 'switchover.requested');
    assert.deepEqual(requestSwitchover(asked.next, B, T0 + 60), { next: null }, 'asking again changes nothing');
    // The holder keeps its lease valid while it demotes: renewals go on, the directive is release.
    const renewed = beat(asked.next, A, { role: 'active', epoch: 1 }, T0 + 500);
    assert.equal(renewed.directive.action, 'release');
    assert.equal(committed(renewed).expiresAt, T0 + 500 + l.terms.leaseTtlMs);
    assert.equal(beat(renewed.next!, B, passive, T0 + 600).directive.action, 'stay-passive', 'the target waits for the release');
    const released = changed(onRelease(renewed.next!, A, { epoch: 1, reason: 'switchover' }, T0 + 2000));
    const taken = committed(beat(released, B, passive, T0 + 2100));
    assert.equal(taken.holder, B);
    assert.equal(taken.epoch, 2);
    assert.equal(taken.switchover, null);
    assert.equal(taken.fencing?.reason, 'switchover');
    assert.deepEqual(taken.fencing?.keys, [KEY_A], 'the old holder is fenced even in a planned switchover');
  });

  it('switchover is refused without an active holder or to the holder itself', () => {
    assert.equal((requestSwitchover(fresh, B, T0) as { code: string }).code, 'switchover_not_possible');
    const granted = committed(beat(fresh, A, passive, T0));
    assert.match((requestSwitchover(granted, B, T0) as { message: string }).message, /fencing is confirmed/);
    assert.match((requestSwitchover(heldByA(), A, T0) as { message: string }).message, /already holds/);
    const lapsed = heldByA();
    assert.match((requestSwitchover(lapsed, B, T0 + 10 * lapsed.terms.leaseTtlMs) as { message: string }).message, /expired/);
  });

  it('maintenance: the holder keeps renewing without release directives; nobody takes over, even at expiry', () => {
    const l = committed({ next: setMaintenance(heldByA(), true, T0).next, directive: { action: 'stay-passive', epoch: 1, holder: A, reason: '' } });
    assert.equal(setMaintenance(l, true, T0).next, null, 'idempotent');
    assert.equal(l.outbox.at(-1)?.type, 'maintenance.changed');
    const renewed = beat(l, A, { role: 'active', epoch: 1 }, T0 + 500);
    assert.equal(renewed.directive.action, 'stay-active');
    const late = T0 + 10 * l.terms.leaseTtlMs;
    const peer = beat(l, B, passive, late);
    assert.equal(peer.next, null);
    assert.match(peer.directive.reason, /maintenance mode/);
    assert.equal((requestSwitchover(l, B, T0) as { code: string }).code, 'switchover_not_possible');
    const off = setMaintenance(l, false, late).next!;
    assert.equal(committed(beat(off, B, passive, late)).holder, B, 'after maintenance, the expired lease is taken over as usual');
  });

  it('standby: a holder put in standby is told to release; a node in standby is never granted; one node stays eligible', () => {
    const r = setStandby(heldByA(), A, true, T0);
    assert.ok(!('code' in r) && r.next);
    assert.deepEqual(r.next.standby, [A]);
    assert.equal(beat(r.next, A, { role: 'active', epoch: 1 }, T0 + 100).directive.action, 'release');
    assert.equal((setStandby(r.next, B, true, T0) as { code: string }).code, 'standby_not_possible');
    const released = changed(onRelease(r.next, A, { epoch: 1, reason: 'switchover' }, T0 + 200));
    assert.equal(beat(released, A, passive, T0 + 10 * fresh.terms.leaseTtlMs).next, null, 'A in standby does not take the vacant lease');
    assert.equal(committed(beat(released, B, passive, T0 + 300)).holder, B);
    const back = setStandby(released, A, false, T0 + 400);
    assert.ok(!('code' in back) && back.next);
    assert.deepEqual(back.next.standby, []);
  });

  it('phase reports: starting needs the current lease, stopping is recorded for an epoch the node held', () => {
    const l = committed(beat(heldByA(), B, passive, T0 + 3201));
    const base = { reportId: 'r-00000001', phase: 'volume-group', status: 'succeeded' } as const;
    assert.equal((phaseEvent(l, A, { ...base, epoch: 1, direction: 'start' }, T0) as { code: string }).code, 'stale_epoch');
    const stop = phaseEvent(l, A, { ...base, epoch: 1, direction: 'stop', durationMs: 350 }, T0);
    assert.ok('event' in stop);
    assert.equal(stop.event.id, 'node-a.r-00000001');
    assert.deepEqual(stop.event.data, { phase: 'volume-group', direction: 'stop', status: 'succeeded', durationMs: 350 });
    assert.equal((phaseEvent(l, A, { ...base, epoch: 3, direction: 'stop' }, T0) as { code: string }).code, 'stale_epoch');
    assert.ok('event' in phaseEvent(l, B, { ...base, epoch: 2, direction: 'start' }, T0));
    // Reports that cannot be true: an epoch the node never held, or one long gone.
    assert.equal((phaseEvent(l, B, { ...base, epoch: 1, direction: 'stop' }, T0) as { code: string }).code, 'stale_epoch', 'B never held epoch 1');
    assert.equal((phaseEvent(l, A, { ...base, epoch: 0, direction: 'stop' }, T0) as { code: string }).code, 'stale_epoch');
    const three = committed(beat({ ...l, expiresAt: T0 }, A, passive, T0 + 9000));
    assert.equal(three.epoch, 3);
    assert.equal((phaseEvent(three, A, { ...base, epoch: 1, direction: 'stop' }, T0) as { code: string }).code, 'stale_epoch', 'two epochs ago');
    assert.ok('event' in phaseEvent(three, B, { ...base, epoch: 2, direction: 'stop' }, T0), 'the previous holder stops');
    const released = changed(onRelease(three, A, { epoch: 3, reason: 'shutdown' }, T0 + 9100));
    assert.ok('event' in phaseEvent(released, A, { ...base, epoch: 3, direction: 'stop' }, T0), 'the node that released');
  });

  it('a node that says it cannot run the spec is never granted the lease, nor renewed', () => {
    const unfit: Heartbeat = { role: 'passive', epoch: 0, unfit: 'device /dev/x is not one this node allows' };
    const d = beat(fresh, A, unfit, T0);
    assert.equal(d.next, null);
    assert.match(d.directive.reason, /node-a cannot run this cluster: device \/dev\/x/);
    const held = heldByA();
    assert.equal(beat(held, A, { ...unfit, role: 'passive' }, T0 + 100).next, null, 'a holder turned unfit does not keep the lease');
  });
});

describe('lease: invariants under any sequence of requests (property)', () => {
  const op = fc.oneof(
    fc.record({
      kind: fc.constant('heartbeat' as const),
      node: fc.constantFrom(A, B),
      role: fc.constantFrom('passive', 'activating', 'active', 'demoting'),
      epoch: fc.integer({ min: 0, max: 6 }),
      peer: fc.option(fc.boolean(), { nil: undefined }),
      known: fc.option(fc.record({ seen: fc.integer({ min: 0, max: 8 }), acted: fc.integer({ min: 0, max: 8 }) }), { nil: undefined }),
      refuses: fc.boolean(),
      vouches: fc.boolean(),
    }),
    fc.record({ kind: fc.constant('confirm' as const), node: fc.constantFrom(A, B), epoch: fc.integer({ min: 1, max: 6 }) }),
    fc.record({ kind: fc.constant('release' as const), node: fc.constantFrom(A, B), epoch: fc.integer({ min: 1, max: 6 }) }),
  );
  const step = fc.record({ op, advanceMs: fc.integer({ min: 0, max: 5000 }) });

  it('epochs only grow, each grant is above every epoch a node reported, and each has one fencing decision', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        let lease = fresh;
        let now = T0;
        let maxReported = 0;
        const holderOfEpoch = new Map<number, string>();
        const decisions = new Map<number, number>();
        for (const { op, advanceMs } of steps) {
          now += advanceMs;
          let next: Lease | null = null;
          if (op.kind === 'heartbeat') {
            const hb: Heartbeat = {
              role: op.role,
              epoch: op.epoch,
              ...(op.peer !== undefined && { peer: { reachable: op.peer } }),
              ...(op.known && { known: op.known }),
              ...(op.refuses && lease.epoch > 0 && { refused: { epoch: lease.epoch, reason: 'left it' } }),
              ...(op.vouches && { vouching: { for: op.node === A ? B : A, epoch: lease.epoch, remainingMs: 2000 } }),
            };
            maxReported = Math.max(maxReported, op.epoch, op.known?.seen ?? 0, op.known?.acted ?? 0);
            const d = beat(lease, op.node, hb, now);
            next = d.next;
            // Only a committed grant or renewal for this node may tell it to be active.
            if (d.directive.action === 'activate' || d.directive.action === 'stay-active') {
              assert.ok(next && next.holder === op.node && next.epoch === d.directive.epoch);
              assert.ok(!hb.vouching, 'a node that vouches is never granted or renewed');
            }
            if (next && next.epoch !== lease.epoch) assert.ok(next.epoch >= maxReported, 'the lease never stays below an epoch a node reported');
          } else if (op.kind === 'confirm') {
            const r = onFencingConfirmed(lease, op.node, { epoch: op.epoch, keys: [] }, now);
            next = 'code' in r ? null : r.next;
          } else {
            const r = onRelease(lease, op.node, { epoch: op.epoch, reason: 'switchover' }, now);
            next = 'code' in r ? null : r.next;
          }
          if (!next) continue;
          assert.equal(next.version, lease.version + 1, 'every write bumps the version by one');
          assert.ok(next.epoch >= lease.epoch, 'epochs never go back');
          const granted = next.fencing !== null && next.fencing.epoch === next.epoch && next.fencing !== lease.fencing && next.epoch !== lease.epoch;
          if (next.epoch !== lease.epoch) assert.ok(granted || (next.holder === null && next.holdoff), 'the epoch moves only with a grant, or past a regression');
          if (granted) {
            assert.ok(next.epoch > maxReported || next.epoch === lease.epoch + 1, 'a grant is above every reported epoch');
            assert.ok(next.epoch > Math.max(maxReported, lease.epoch) || !lease.holdoff, 'a grant is above every reported epoch');
            assert.ok(!holderOfEpoch.has(next.epoch), `epoch ${next.epoch} granted twice`);
            holderOfEpoch.set(next.epoch, next.holder!);
            assert.deepEqual(next.fencing?.keys, [next.terms.keys[next.terms.nodes.indexOf(next.holder!) === 0 ? 1 : 0]]);
            // Taken from a holder still within its lease: only early fencing, or a regression's or refusal's rules.
            if (lease.holder !== null && lease.holder !== next.holder && lease.epoch === next.epoch - 1) {
              assert.ok(
                now - lease.renewedAt > lease.terms.leaseTtlMs + lease.terms.skewAllowanceMs ||
                  (next.fencing?.reason === 'holder-silent' && now - lease.renewedAt > lease.terms.suspectAfterMs),
              );
            }
          }
          for (const e of next.outbox)
            if (e.type === 'fencing.decided') decisions.set(e.epoch, (decisions.get(e.epoch) ?? 0) + (lease.outbox.includes(e) ? 0 : 1));
          lease = next;
        }
        for (const [epoch, n] of decisions) assert.equal(n, 1, `epoch ${epoch} has ${n} fencing decisions`);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('lease: the store went back (epoch memory)', () => {
  /** A restored store: the lease at epoch 1 held by A, while the nodes lived on to later epochs. */
  const restored = () => heldByA();
  const quiet = 0;

  it('a node still serving under a later epoch keeps the service under the next one, fencing the peer', () => {
    const l = restored();
    const d = onHeartbeat(l, B, { role: 'active', epoch: 5, known: { seen: 5, acted: 5 } }, T0 + 100, quiet);
    const n = committed(d);
    assert.equal(n.holder, B);
    assert.equal(n.epoch, 6, 'above every reported epoch');
    assert.equal(n.version, l.version + 1, 'one write');
    assert.equal(n.fencing?.reason, 'store-regressed');
    assert.deepEqual(n.fencing?.keys, [KEY_A]);
    assert.ok(d.directive.action === 'activate' && !d.directive.fence.confirmed && d.directive.epoch === 6);
    const event = n.outbox.find((e) => e.type === 'store.regressed');
    assert.ok(event?.type === 'store.regressed');
    assert.deepEqual(event.data, { storeEpoch: 1, reportedEpoch: 5, serving: true });
    // A, named by the restored lease, is not given it back: it is told to demote.
    const a = onHeartbeat(n, A, { role: 'active', epoch: 1, known: { seen: 5, acted: 1 } }, T0 + 200, 100);
    assert.equal(a.next, null);
    assert.equal(a.directive.action, 'demote');
  });

  it('a passive node that saw a later epoch moves the lease past it; nobody is granted until a serving node had a lease to report', () => {
    const l = restored();
    const d = onHeartbeat(l, A, { role: 'passive', epoch: 0, known: { seen: 7, acted: 4 } }, T0 + 100, quiet);
    const n = committed(d);
    assert.equal(n.holder, null);
    assert.equal(n.epoch, 7);
    assert.deepEqual([n.holdoff?.storeEpoch, n.holdoff?.reason], [1, 'store-regressed']);
    assert.equal(d.directive.action, 'stay-passive');
    assert.deepEqual(
      n.outbox.filter((e) => e.type === 'store.regressed').map((e) => e.data),
      [{ storeEpoch: 1, reportedEpoch: 7, serving: false }],
    );
    const wait = n.terms.leaseTtlMs + n.terms.skewAllowanceMs;
    // Within the hold-off only a node serving under the lease's epoch is granted (at once).
    assert.equal(onHeartbeat(n, A, { role: 'passive', epoch: 0, known: { seen: 7, acted: 4 } }, T0 + 200, wait).next, null);
    const keeps = committed(onHeartbeat(n, B, { role: 'active', epoch: 7, known: { seen: 7, acted: 7 } }, T0 + 200, 10));
    assert.deepEqual([keeps.holder, keeps.epoch, keeps.fencing?.reason, keeps.holdoff], [B, 8, 'store-regressed', null]);
    // After it, whoever asks: above everything reported.
    const after = committed(onHeartbeat(n, A, { role: 'passive', epoch: 0, known: { seen: 7, acted: 4 } }, T0 + 300, wait + 1));
    assert.deepEqual([after.holder, after.epoch], [A, 8]);
    // A stale node (acting under an older epoch) is not "serving": it is told to demote.
    assert.equal(onHeartbeat(n, B, { role: 'active', epoch: 6, known: { seen: 7, acted: 6 } }, T0 + 200, 10).directive.action, 'demote');
  });

  it('a holder that refuses its epoch (it left it) gets the next one once no node can still serve, never the same one', () => {
    const l = restored();
    const refusing: Heartbeat = { role: 'passive', epoch: 0, known: { seen: 1, acted: 1 }, refused: { epoch: 1, reason: 'left it' } };
    const vacated = committed(onHeartbeat(l, A, refusing, T0 + 100, quiet));
    assert.deepEqual([vacated.holder, vacated.epoch, vacated.holdoff?.reason], [null, 1, 'epoch-refused']);
    assert.ok(!vacated.outbox.some((e) => e.type === 'store.regressed'), 'a refusal alone is no evidence of a restore');
    const wait = l.terms.leaseTtlMs + l.terms.skewAllowanceMs;
    assert.equal(onHeartbeat(vacated, A, refusing, T0 + 200, wait).next, null);
    // The peer reports, passive and knowing of nothing later: all is known, it is granted at once.
    const peer = committed(onHeartbeat(vacated, B, { role: 'passive', epoch: 0, known: { seen: 1, acted: 0 } }, T0 + 300, 200));
    assert.deepEqual([peer.holder, peer.epoch, peer.fencing?.reason], [B, 2, 'epoch-refused']);
    const d = onHeartbeat(vacated, A, refusing, T0 + 3500, wait + 1);
    const n = committed(d);
    assert.deepEqual([n.holder, n.epoch, n.fencing?.reason, n.fencing?.confirmedAt], [A, 2, 'epoch-refused', null]);
    assert.ok(d.directive.action === 'activate' && !d.directive.fence.confirmed);
  });

  it('an equal report is not a regression; the re-created cluster (epoch 0) is', () => {
    const l = heldByA();
    assert.equal(onHeartbeat(l, B, { role: 'passive', epoch: 0, known: { seen: 1, acted: 0 } }, T0 + 100, 100).next, null);
    const n = committed(onHeartbeat(fresh, A, { role: 'passive', epoch: 0, known: { seen: 3, acted: 3 } }, T0, 0));
    assert.equal(n.epoch, 3);
    assert.equal(n.holder, null);
  });
});

describe('lease: time is measured by the arbiter on its monotonic clock', () => {
  it('the wall clock alone never expires a lease: a step of +10 s grants nothing while the holder renews', () => {
    const l = heldByA();
    // The arbiter's wall clock jumped 10 s ahead; it has seen the lease unchanged for 400 ms.
    const d = onHeartbeat(l, B, { role: 'passive', epoch: 0, peer: { reachable: false } }, T0 + 10_400, 400);
    assert.equal(d.next, null);
    assert.equal(d.directive.action, 'stay-passive');
  });

  it('a step back does not shorten a renewal: expiry is only ever extended, and quiet time decides', () => {
    const l = heldByA();
    const back = committed(onHeartbeat(l, A, { role: 'active', epoch: 1 }, T0 - 10_000, 500));
    assert.equal(back.expiresAt, l.expiresAt, 'a renewal never moves the recorded expiry earlier');
    // Taken only after the arbiter itself watched the lease for a TTL plus the allowance.
    const wait = l.terms.leaseTtlMs + l.terms.skewAllowanceMs;
    assert.equal(onHeartbeat(back, B, passive, T0 + 60_000, wait).next, null);
    assert.equal(committed(onHeartbeat(back, B, passive, T0 - 9_000, wait + 1)).holder, B);
  });
});

describe('lease: failsafe (the holder serves on its peer\'s promise)', () => {
  const vouchingFor = (epoch: number, remainingMs = 2500): Heartbeat => ({ role: 'passive', epoch: 0, vouching: { for: A, epoch, remainingMs } });

  it('a node that vouches is never granted the lease: not at expiry, not after, not with early fencing', () => {
    const l = heldByA();
    for (const late of [3_300, 30_000, 3_600_000]) {
      const d = beat(l, B, vouchingFor(1), T0 + late);
      assert.equal(d.directive.action, 'stay-passive');
      assert.match(d.directive.reason, /vouches for node-a/);
      assert.notEqual(d.next?.holder, B);
    }
    // A restarted agent that may have promised before (epoch 0) is not granted a vacant lease either.
    const d = beat(fresh, B, { role: 'passive', epoch: 0, vouching: { for: A, epoch: 0, remainingMs: 1200 } }, T0);
    assert.equal(d.directive.action, 'stay-passive');
    assert.equal(d.next, null, 'and nothing is recorded for it');
    // Once the promise has run out the same node is granted the lapsed lease, fencing the holder.
    const after = beat(l, B, passive, T0 + 3_300);
    assert.equal(after.directive.action, 'activate');
    assert.equal(after.next?.fencing?.reason, 'lease-expired');
  });

  it('the first vouching heartbeat records who serves and who vouches (failsafe.entered), once', () => {
    const l = heldByA();
    const entered = committed(beat(l, B, vouchingFor(1), T0 + 1_500));
    assert.deepEqual(entered.failsafe, { since: T0 + 1_500, vouchedBy: B, reportedBy: 'peer' });
    const e = entered.outbox.at(-1)!;
    assert.equal(e.type, 'failsafe.entered');
    assert.deepEqual([e.node, e.data], [A, { vouchedBy: B, unreachableFrom: [A] }]);
    assert.equal(beat(entered, B, vouchingFor(1), T0 + 2_000).next, null, 'recorded once');
    assert.equal(beat(l, B, vouchingFor(7), T0 + 1_500).next, null, 'not for an epoch the lease is not at');
    assert.equal(beat(l, B, vouchingFor(1), T0 + 600).next, null, 'nor while the holder renews on time (a hedge against one slow renewal)');
  });

  it('the holder heard from again renews under the same epoch, and the failsafe ends (failsafe.left)', () => {
    const entered = committed(beat(heldByA(), B, vouchingFor(1), T0 + 1_500));
    const d = beat(entered, A, { role: 'active', epoch: 1, failsafe: { forMs: 60_000, vouchedBy: B } }, T0 + 61_000);
    const next = committed(d);
    assert.equal(d.directive.action, 'stay-active');
    assert.deepEqual([next.holder, next.epoch, next.failsafe], [A, 1, null]);
    const left = next.outbox.at(-1)!;
    assert.equal(left.type, 'failsafe.left');
    assert.deepEqual(left.data, { vouchedBy: B, durationMs: 59_500, outcome: 'renewed' });
  });

  it('cut off from both nodes, the arbiter learns of it from the holder afterwards: entered and left at once', () => {
    const next = committed(beat(heldByA(), A, { role: 'active', epoch: 1, failsafe: { forMs: 60_000, vouchedBy: B } }, T0 + 61_000));
    const [entered, left] = next.outbox.slice(-2);
    assert.equal(entered?.type, 'failsafe.entered');
    assert.equal(entered?.at, T0 + 1_000);
    assert.deepEqual(entered?.data, { vouchedBy: B, unreachableFrom: [A, B] });
    assert.deepEqual([left?.type, left?.data], ['failsafe.left', { vouchedBy: B, durationMs: 60_000, outcome: 'renewed' }]);
    assert.equal(next.failsafe, null);
  });

  it('the peer takes over once it no longer vouches: the failsafe ends as replaced', () => {
    const entered = committed(beat(heldByA(), B, vouchingFor(1), T0 + 1_500));
    const taken = committed(beat(entered, B, { role: 'passive', epoch: 0, peer: { reachable: false } }, T0 + 5_000));
    assert.deepEqual([taken.holder, taken.epoch, taken.failsafe], [B, 2, null]);
    const left = taken.outbox.find((e) => e.type === 'failsafe.left');
    assert.deepEqual(left?.data, { vouchedBy: B, durationMs: 3_500, outcome: 'replaced' });
  });

  it('a switchover is refused while the holder is in failsafe; maintenance and standby are recorded', () => {
    const entered = committed(beat(heldByA(), B, vouchingFor(1), T0 + 1_500));
    const r = requestSwitchover(entered, B, T0 + 1_600);
    assert.ok('code' in r);
    assert.match(r.message, /serves in failsafe, vouched by node-b: the arbiter cannot reach it/);
    assert.equal(setMaintenance(entered, true, T0 + 1_600).next?.maintenance, true);
    const standby = setStandby(entered, A, true, T0 + 1_600);
    assert.ok(!('code' in standby) && standby.next?.standby.includes(A));
  });
});
