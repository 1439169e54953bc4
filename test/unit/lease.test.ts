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

function committed(d: Decision): Lease {
  assert.ok(d.next, `expected a write, got directive ${JSON.stringify(d.directive)}`);
  return d.next;
}

/** A holds epoch 1 with fencing confirmed, renewed at `at`. */
function heldByA(at = T0): Lease {
  const granted = committed(onHeartbeat(fresh, A, passive, at));
  const r = onFencingConfirmed(granted, A, { epoch: 1, keys: [KEY_B] }, at);
  assert.ok(!('code' in r) && r.next);
  return r.next;
}

describe('lease: acquisition and renewal', () => {
  it("cold start: the first node to ask gets epoch 1 and must fence its peer's key first", () => {
    const d = onHeartbeat(fresh, A, passive, T0);
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
    const l = committed(onHeartbeat(fresh, A, passive, T0));
    const d = onHeartbeat(l, B, passive, T0 + 10);
    assert.equal(d.next, null);
    assert.equal(d.directive.action, 'stay-passive');
    assert.match(d.directive.reason, /node-a holds epoch 1, renewed 10 ms ago/);
  });

  it('renewal keeps the epoch, bumps the version and extends expiry from now', () => {
    const l = heldByA();
    const d = onHeartbeat(l, A, { role: 'active', epoch: 1 }, T0 + 500);
    const n = committed(d);
    assert.equal(n.epoch, 1);
    assert.equal(n.version, l.version + 1);
    assert.equal(n.renewedAt, T0 + 500);
    assert.equal(n.expiresAt, T0 + 3500);
    assert.deepEqual(d.directive, { action: 'stay-active', epoch: 1, reason: 'renewed: holder of epoch 1' });
    assert.equal(n.outbox.length, l.outbox.length, 'a renewal records no event');
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
    const renewed = committed(onHeartbeat(r.next, A, { role: 'active', epoch: 1 }, T0 + 100));
    assert.equal(renewed.expiresAt, T0 + 3000);
    assert.equal(committed(onHeartbeat(renewed, A, { role: 'active', epoch: 1 }, T0 + 1500)).expiresAt, T0 + 3500);
  });

  it('a holder that restarted (reports passive) is told to activate again, fencing already confirmed', () => {
    const d = onHeartbeat(heldByA(), A, passive, T0 + 500);
    assert.equal(d.directive.action, 'activate');
    assert.ok(d.directive.action === 'activate' && d.directive.fence.confirmed);
  });

  it('a holder whose lease lapsed but was not taken renews it under the same epoch', () => {
    const n = committed(onHeartbeat(heldByA(), A, passive, T0 + 60_000));
    assert.equal(n.holder, A);
    assert.equal(n.epoch, 1);
  });
});

describe('lease: takeover', () => {
  it('the peer cannot take the lease before expiry plus the skew allowance', () => {
    const l = heldByA();
    const lastSafe = l.expiresAt + l.terms.skewAllowanceMs;
    assert.equal(onHeartbeat(l, B, passive, lastSafe).next, null);
    assert.equal(leaseState(l, lastSafe), 'held');
    const d = onHeartbeat(l, B, passive, lastSafe + 1);
    const n = committed(d);
    assert.equal(n.holder, B);
    assert.equal(n.epoch, 2);
    assert.deepEqual(n.fencing, { epoch: 2, holder: B, victim: A, keys: [KEY_A], reason: 'lease-expired', decidedAt: lastSafe + 1, confirmedAt: null });
    assert.equal(d.directive.action, 'activate');
  });

  it('early fencing: holder silent to the arbiter and unreachable from the peer', () => {
    const l = heldByA();
    const silent = T0 + l.terms.suspectAfterMs + 1;
    const n = committed(onHeartbeat(l, B, { role: 'passive', epoch: 0, peer: { reachable: false } }, silent));
    assert.equal(n.epoch, 2);
    assert.equal(n.fencing?.reason, 'holder-silent');
    assert.equal(n.fencing?.victim, A);
    assert.ok(silent < l.expiresAt, 'granted before the old lease expired');
  });

  it('no early fencing on one kind of evidence alone, or with the policy off', () => {
    const l = heldByA();
    const silent = T0 + l.terms.suspectAfterMs + 1;
    const unreachable: Heartbeat = { role: 'passive', epoch: 0, peer: { reachable: false } };
    assert.equal(onHeartbeat(l, B, unreachable, T0 + l.terms.suspectAfterMs).next, null, 'not yet silent long enough');
    const reachable = onHeartbeat(l, B, { role: 'passive', epoch: 0, peer: { reachable: true } }, silent);
    assert.equal(reachable.next, null, 'the peer still reaches the holder');
    assert.match(reachable.directive.reason, /this node still reaches it/);
    assert.equal(onHeartbeat(l, B, passive, silent).next, null, 'the peer did not check');
    const off = { ...l, terms: { ...l.terms, earlyFencing: false } };
    assert.equal(onHeartbeat(off, B, unreachable, silent).next, null, 'policy off');
  });

  it('a node that thinks it is active without the lease is told to demote', () => {
    const l = committed(onHeartbeat(heldByA(), B, passive, T0 + 3201));
    const d = onHeartbeat(l, A, { role: 'active', epoch: 1 }, T0 + 3300);
    assert.equal(d.next, null);
    assert.equal(d.directive.action, 'demote');
    assert.match(d.directive.reason, /node-b holds epoch 2.*reports active under epoch 1 without the lease: demote/);
  });
});

describe('lease: reports', () => {
  it('fencing confirmation is accepted only from the holder for its epoch, and only once', () => {
    const granted = committed(onHeartbeat(fresh, A, passive, T0));
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
    const r = onRelease(l, A, { epoch: 1, reason: 'resource-failure' }, T0 + 100);
    assert.ok(!('code' in r));
    assert.equal(r.next.holder, null);
    assert.equal(r.next.epoch, 1, 'releasing does not change the epoch');
    assert.equal(leaseState(r.next, T0 + 100), 'vacant');
    const back = onHeartbeat(r.next, A, passive, T0 + 100 + r.next.terms.leaseTtlMs);
    assert.equal(back.next, null);
    assert.match(back.directive.reason, /the peer has the first claim/);
    const peer = committed(onHeartbeat(r.next, B, passive, T0 + 200));
    assert.equal(peer.epoch, 2);
    assert.equal(peer.fencing?.reason, 'released');
    assert.equal(peer.fencing?.victim, null);
    assert.deepEqual(peer.fencing?.keys, [KEY_A]);
    const later = committed(onHeartbeat(r.next, A, passive, T0 + 101 + r.next.terms.leaseTtlMs));
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
    const renewed = onHeartbeat(asked.next, A, { role: 'active', epoch: 1 }, T0 + 500);
    assert.equal(renewed.directive.action, 'release');
    assert.equal(committed(renewed).expiresAt, T0 + 500 + l.terms.leaseTtlMs);
    assert.equal(onHeartbeat(renewed.next!, B, passive, T0 + 600).directive.action, 'stay-passive', 'the target waits for the release');
    const released = onRelease(renewed.next!, A, { epoch: 1, reason: 'switchover' }, T0 + 2000);
    assert.ok(!('code' in released));
    const taken = committed(onHeartbeat(released.next, B, passive, T0 + 2100));
    assert.equal(taken.holder, B);
    assert.equal(taken.epoch, 2);
    assert.equal(taken.switchover, null);
    assert.equal(taken.fencing?.reason, 'switchover');
    assert.deepEqual(taken.fencing?.keys, [KEY_A], 'the old holder is fenced even in a planned switchover');
  });

  it('switchover is refused without an active holder or to the holder itself', () => {
    assert.equal((requestSwitchover(fresh, B, T0) as { code: string }).code, 'switchover_not_possible');
    const granted = committed(onHeartbeat(fresh, A, passive, T0));
    assert.match((requestSwitchover(granted, B, T0) as { message: string }).message, /fencing is confirmed/);
    assert.match((requestSwitchover(heldByA(), A, T0) as { message: string }).message, /already holds/);
    const lapsed = heldByA();
    assert.match((requestSwitchover(lapsed, B, T0 + 10 * lapsed.terms.leaseTtlMs) as { message: string }).message, /expired/);
  });

  it('maintenance: the holder keeps renewing without release directives; nobody takes over, even at expiry', () => {
    const l = committed({ next: setMaintenance(heldByA(), true, T0).next, directive: { action: 'stay-passive', epoch: 1, holder: A, reason: '' } });
    assert.equal(setMaintenance(l, true, T0).next, null, 'idempotent');
    assert.equal(l.outbox.at(-1)?.type, 'maintenance.changed');
    const renewed = onHeartbeat(l, A, { role: 'active', epoch: 1 }, T0 + 500);
    assert.equal(renewed.directive.action, 'stay-active');
    const late = T0 + 10 * l.terms.leaseTtlMs;
    const peer = onHeartbeat(l, B, passive, late);
    assert.equal(peer.next, null);
    assert.match(peer.directive.reason, /maintenance mode/);
    assert.equal((requestSwitchover(l, B, T0) as { code: string }).code, 'switchover_not_possible');
    const off = setMaintenance(l, false, late).next!;
    assert.equal(committed(onHeartbeat(off, B, passive, late)).holder, B, 'after maintenance, the expired lease is taken over as usual');
  });

  it('standby: a holder put in standby is told to release; a node in standby is never granted; one node stays eligible', () => {
    const r = setStandby(heldByA(), A, true, T0);
    assert.ok(!('code' in r) && r.next);
    assert.deepEqual(r.next.standby, [A]);
    assert.equal(onHeartbeat(r.next, A, { role: 'active', epoch: 1 }, T0 + 100).directive.action, 'release');
    assert.equal((setStandby(r.next, B, true, T0) as { code: string }).code, 'standby_not_possible');
    const released = onRelease(r.next, A, { epoch: 1, reason: 'switchover' }, T0 + 200);
    assert.ok(!('code' in released));
    assert.equal(onHeartbeat(released.next, A, passive, T0 + 10 * fresh.terms.leaseTtlMs).next, null, 'A in standby does not take the vacant lease');
    assert.equal(committed(onHeartbeat(released.next, B, passive, T0 + 300)).holder, B);
    const back = setStandby(released.next, A, false, T0 + 400);
    assert.ok(!('code' in back) && back.next);
    assert.deepEqual(back.next.standby, []);
  });

  it('phase reports: starting needs the current lease, stopping is recorded for an epoch the node held', () => {
    const l = committed(onHeartbeat(heldByA(), B, passive, T0 + 3201));
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
    const three = committed(onHeartbeat({ ...l, expiresAt: T0 }, A, passive, T0 + 9000));
    assert.equal(three.epoch, 3);
    assert.equal((phaseEvent(three, A, { ...base, epoch: 1, direction: 'stop' }, T0) as { code: string }).code, 'stale_epoch', 'two epochs ago');
    assert.ok('event' in phaseEvent(three, B, { ...base, epoch: 2, direction: 'stop' }, T0), 'the previous holder stops');
    const released = onRelease(three, A, { epoch: 3, reason: 'shutdown' }, T0 + 9100);
    assert.ok('next' in released);
    assert.ok('event' in phaseEvent(released.next, A, { ...base, epoch: 3, direction: 'stop' }, T0), 'the node that released');
  });

  it('a node that says it cannot run the spec is never granted the lease, nor renewed', () => {
    const unfit: Heartbeat = { role: 'passive', epoch: 0, unfit: 'device /dev/x is not one this node allows' };
    const d = onHeartbeat(fresh, A, unfit, T0);
    assert.equal(d.next, null);
    assert.match(d.directive.reason, /node-a cannot run this cluster: device \/dev\/x/);
    const held = heldByA();
    assert.equal(onHeartbeat(held, A, { ...unfit, role: 'passive' }, T0 + 100).next, null, 'a holder turned unfit does not keep the lease');
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
    }),
    fc.record({ kind: fc.constant('confirm' as const), node: fc.constantFrom(A, B), epoch: fc.integer({ min: 1, max: 6 }) }),
    fc.record({ kind: fc.constant('release' as const), node: fc.constantFrom(A, B), epoch: fc.integer({ min: 1, max: 6 }) }),
  );
  const step = fc.record({ op, advanceMs: fc.integer({ min: 0, max: 5000 }) });

  it('epochs only grow, change exactly with the holder, and each has one fencing decision', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        let lease = fresh;
        let now = T0;
        const holderOfEpoch = new Map<number, string>();
        const decisions = new Map<number, number>();
        for (const { op, advanceMs } of steps) {
          now += advanceMs;
          let next: Lease | null = null;
          if (op.kind === 'heartbeat') {
            const d = onHeartbeat(lease, op.node, { role: op.role, epoch: op.epoch, ...(op.peer !== undefined && { peer: { reachable: op.peer } }) }, now);
            next = d.next;
            // Only a committed grant or renewal for this node may tell it to be active.
            if (d.directive.action === 'activate' || d.directive.action === 'stay-active') {
              assert.ok(next && next.holder === op.node && next.epoch === d.directive.epoch);
            }
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
          const newHolder = next.holder !== null && next.holder !== lease.holder;
          assert.equal(
            next.epoch !== lease.epoch,
            newHolder && next.epoch === lease.epoch + 1,
            'the epoch moves by one exactly when a node newly takes the lease',
          );
          if (newHolder) {
            assert.ok(!holderOfEpoch.has(next.epoch), `epoch ${next.epoch} granted twice`);
            holderOfEpoch.set(next.epoch, next.holder!);
            assert.equal(next.fencing?.epoch, next.epoch);
            assert.deepEqual(next.fencing?.keys, [next.terms.keys[next.terms.nodes.indexOf(next.holder!) === 0 ? 1 : 0]]);
            if (lease.holder !== null) {
              assert.ok(
                now > lease.expiresAt + lease.terms.skewAllowanceMs ||
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
