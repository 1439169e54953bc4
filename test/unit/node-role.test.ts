import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Directive } from '../../shared/lease.ts';
import { assertTransition, type CycleSnapshot, decideCycle, NODE_ROLES, passivePollIntervalMs, TRANSITIONS } from '../../shared/node-role.ts';
import { activeWindowMs, TimingSchema } from '../../shared/timing.ts';

const KEY = '0x17b0d5da99e0bd7a';
const activate = (epoch: number, confirmed: boolean): Directive => ({
  action: 'activate',
  epoch,
  fence: { victim: 'node-a', keys: [KEY], confirmed },
  reason: 'granted',
});
const base: CycleSnapshot = {
  role: 'passive',
  epoch: 0,
  confirmedEpoch: 0,
  now: 10_000,
  deadline: null,
  heartbeat: { ok: true, directive: { action: 'stay-passive', epoch: 1, holder: 'node-a', reason: 'node-a holds epoch 1' }, renewed: false },
  keyPresent: null,
  failure: null,
  maxRestarts: 2,
  leftovers: false,
  memory: { seen: 0, acted: 0 },
};

/** Active under epoch 2, its deadline at 12 s, the latest heartbeat a committed renewal with `directive`. */
const activeUnder = (directive: Directive) => ({
  ...base,
  role: 'active' as const,
  epoch: 2,
  confirmedEpoch: 2,
  deadline: 12_000,
  heartbeat: { ok: true as const, directive, renewed: true },
});

describe('node role rules', () => {
  it('a grant leads to fencing first, naming the keys', () => {
    const d = decideCycle({ ...base, deadline: 12_000, heartbeat: { ok: true, directive: activate(2, false), renewed: true } });
    assert.deepEqual(d, { action: 'fence', epoch: 2, keys: [KEY], reason: `granted epoch 2: fencing ${KEY} of node-a before anything starts` });
  });

  it('activates once fencing is acknowledged, then stays active', () => {
    const granted = {
      ...base,
      role: 'fencing' as const,
      epoch: 2,
      deadline: 12_000,
      heartbeat: { ok: true as const, directive: activate(2, false), renewed: true },
    };
    assert.equal(decideCycle(granted).action, 'fence', 'not yet acknowledged');
    assert.equal(decideCycle({ ...granted, confirmedEpoch: 2 }).action, 'activate');
    const active = {
      ...granted,
      role: 'active' as const,
      confirmedEpoch: 2,
      heartbeat: { ok: true as const, directive: { action: 'stay-active', epoch: 2, reason: 'renewed' } as Directive, renewed: true },
    };
    assert.deepEqual(decideCycle(active), { action: 'none', reason: 'active: holder of epoch 2, lease renewed' });
  });

  it('demotes at the deadline whatever the last directive said', () => {
    const active = {
      ...base,
      role: 'active' as const,
      epoch: 2,
      confirmedEpoch: 2,
      deadline: 10_000,
      heartbeat: { ok: true as const, directive: activate(2, true), renewed: true },
    };
    assert.equal(decideCycle({ ...active, now: 9_999 }).action, 'none');
    assert.match(decideCycle(active).reason, /lease deadline passed 0 ms ago without a renewal/);
    assert.equal(decideCycle({ ...active, heartbeat: { ok: false, error: 'timeout' } }).action, 'demote');
  });

  it('keeps serving while the control plane is briefly unreachable and the lease is valid', () => {
    const d = decideCycle({
      ...base,
      role: 'active',
      epoch: 2,
      confirmedEpoch: 2,
      deadline: 11_500,
      heartbeat: { ok: false, error: 'no answer within 800 ms' },
    });
    assert.deepEqual(d, { action: 'none', reason: 'control plane unreachable (no answer within 800 ms); lease valid for 1500 ms more' });
  });

  it('restarts a failed resource locally while the control plane is unreachable (failsafe may last long); past the limit, demotes', () => {
    const unreachable = {
      ...base,
      role: 'active' as const,
      epoch: 2,
      confirmedEpoch: 2,
      deadline: 11_500,
      heartbeat: { ok: false as const, error: 'no answer within 800 ms' },
    };
    const failed = (restarts: number) => ({ resource: 'nfs-server', reason: 'nfsd runs 0 threads', restarts });
    const d = decideCycle({ ...unreachable, failure: failed(0) });
    assert.deepEqual([d.action, d.action === 'restart' && d.resource], ['restart', 'nfs-server']);
    assert.equal(decideCycle({ ...unreachable, failure: failed(unreachable.maxRestarts) }).action, 'demote');
  });

  it('self-fences when its key vanished while holding', () => {
    const d = decideCycle({
      ...base,
      role: 'active',
      epoch: 2,
      confirmedEpoch: 2,
      deadline: 12_000,
      keyPresent: false,
      heartbeat: { ok: true, directive: activate(2, true), renewed: true },
    });
    assert.equal(d.action, 'self-fence');
  });

  it('restarts a failed resource locally up to the limit, then releases the lease', () => {
    const active = activeUnder(activate(2, true));
    const failure = { resource: 'nfs-server', reason: 'nfs-server is failed', restarts: 1 };
    assert.deepEqual(decideCycle({ ...active, failure }), {
      action: 'restart',
      resource: 'nfs-server',
      reason: 'nfs-server failed (nfs-server is failed); local restart 2 of 2',
    });
    assert.equal(decideCycle({ ...active, failure: { ...failure, restarts: 2 } }).action, 'release');
    const maintenance = { ...active, heartbeat: { ...active.heartbeat, maintenance: true }, failure: { ...failure, restarts: 2 } };
    assert.deepEqual(decideCycle(maintenance), {
      action: 'none',
      reason: 'maintenance mode: nfs-server failed (nfs-server is failed); not restarting or releasing',
    });
    assert.equal(decideCycle({ ...maintenance, now: 12_000 }).action, 'demote', 'maintenance never suspends the deadline');
  });

  it('switchover: a holder told to release demotes and releases; a demoting one waits', () => {
    const release: Directive = { action: 'release', epoch: 2, reason: 'switchover to node-b requested' };
    const active = activeUnder(release);
    assert.deepEqual(decideCycle(active), { action: 'release', epoch: 2, reason: 'control plane: switchover to node-b requested', why: 'switchover' });
    assert.equal(decideCycle({ ...active, role: 'passive' }).action, 'release', 'a holder with nothing running still hands the lease over');
    assert.equal(decideCycle({ ...active, role: 'demoting' }).action, 'none');
    assert.equal(decideCycle({ ...active, now: 12_000 }).action, 'demote', 'the deadline still comes first');
  });

  it("demotes when told the lease is someone else's, or acting under an old epoch", () => {
    const active = { ...base, role: 'active' as const, epoch: 2, confirmedEpoch: 2, deadline: 12_000, memory: { seen: 2, acted: 2 } };
    assert.equal(
      decideCycle({ ...active, heartbeat: { ok: true, directive: { action: 'demote', epoch: 3, holder: 'node-b', reason: 'x' }, renewed: false } }).action,
      'demote',
    );
    assert.equal(decideCycle({ ...active, heartbeat: { ok: true, directive: activate(1, true), renewed: true } }).action, 'demote');
    // Still activating (not yet serving) and given another epoch: stop first.
    assert.equal(decideCycle({ ...active, role: 'activating', heartbeat: { ok: true, directive: activate(3, false), renewed: true } }).action, 'demote');
  });

  it("the arbiter's store went back: serving, it fences again under a new epoch or for a lost report, without stopping", () => {
    const active = { ...base, role: 'active' as const, epoch: 2, confirmedEpoch: 2, deadline: 12_000, memory: { seen: 2, acted: 2 } };
    const moved = decideCycle({ ...active, heartbeat: { ok: true, directive: activate(6, false), renewed: true } });
    assert.deepEqual([moved.action, 'epoch' in moved && moved.epoch], ['refence', 6]);
    assert.match(moved.reason, /granted epoch 6 while serving under 2: fencing .* again and reporting it, without stopping/);
    const lost = decideCycle({ ...active, heartbeat: { ok: true, directive: activate(2, false), renewed: true } });
    assert.deepEqual([lost.action, 'epoch' in lost && lost.epoch], ['refence', 2]);
    // Not above what it has seen: someone else held a later epoch, so it may have been fenced.
    assert.equal(decideCycle({ ...active, memory: { seen: 6, acted: 2 }, heartbeat: { ok: true, directive: activate(6, false), renewed: true } }).action, 'demote');
  });

  it('a new grant only above every epoch the node remembers: an epoch it left or saw is refused, with the reason', () => {
    const granted = (epoch: number, memory: { seen: number; acted: number }) =>
      decideCycle({ ...base, deadline: 12_000, memory, heartbeat: { ok: true, directive: activate(epoch, true), renewed: true } });
    const left = granted(3, { seen: 3, acted: 3 });
    assert.equal(left.action, 'refuse');
    assert.match(left.reason, /refusing epoch 3: this node has acted under epoch 3 and never acts again under an epoch it has left or seen/);
    assert.equal(granted(3, { seen: 5, acted: 1 }).action, 'refuse');
    assert.match(granted(3, { seen: 5, acted: 1 }).reason, /seen epoch 5 granted/);
    assert.equal(granted(4, { seen: 3, acted: 3 }).action, 'activate', 'above both: a new grant');
    const fence = decideCycle({ ...base, deadline: 12_000, memory: { seen: 3, acted: 3 }, heartbeat: { ok: true, directive: activate(4, false), renewed: true } });
    assert.equal(fence.action, 'fence');
  });

  const snapshot = fc.record({
    role: fc.constantFrom(...NODE_ROLES),
    epoch: fc.integer({ min: 0, max: 5 }),
    confirmedEpoch: fc.integer({ min: 0, max: 5 }),
    now: fc.integer({ min: 0, max: 20_000 }),
    deadline: fc.option(fc.integer({ min: 0, max: 20_000 }), { nil: null }),
    heartbeat: fc.oneof(
      fc.record({ ok: fc.constant(false as const), error: fc.constant('down') }),
      fc.record({
        ok: fc.constant(true as const),
        renewed: fc.boolean(),
        directive: fc.oneof(
          fc.record({
            action: fc.constant('activate' as const),
            epoch: fc.integer({ min: 1, max: 5 }),
            fence: fc.record({ victim: fc.constant(null), keys: fc.constant([KEY]), confirmed: fc.boolean() }),
            reason: fc.constant('r'),
          }),
          fc.record({ action: fc.constant('stay-active' as const), epoch: fc.integer({ min: 1, max: 5 }), reason: fc.constant('r') }),
          fc.record({
            action: fc.constantFrom('stay-passive' as const, 'demote' as const),
            epoch: fc.integer({ min: 1, max: 5 }),
            holder: fc.constant('node-b'),
            reason: fc.constant('r'),
          }),
        ),
      }),
    ),
    keyPresent: fc.option(fc.boolean(), { nil: null }),
    failure: fc.option(fc.record({ resource: fc.constant('exports'), reason: fc.constant('x'), restarts: fc.integer({ min: 0, max: 3 }) }), { nil: null }),
    maxRestarts: fc.constant(2),
    leftovers: fc.boolean(),
    memory: fc.record({ seen: fc.integer({ min: 0, max: 5 }), acted: fc.integer({ min: 0, max: 5 }) }),
  }) as fc.Arbitrary<CycleSnapshot>;

  it('never takes an epoch it has seen or acted under as a new grant (property)', () => {
    fc.assert(
      fc.property(snapshot, (s) => {
        const d = decideCycle(s);
        if (d.action !== 'fence' && d.action !== 'activate' && d.action !== 'refence') return true;
        const known = Math.max(s.memory.seen, s.memory.acted);
        const holding = s.role === 'fencing' || s.role === 'activating' || s.role === 'active';
        const continuing = (holding && s.epoch === d.epoch) || (s.leftovers && s.memory.acted === d.epoch);
        return continuing || d.epoch > known;
      }),
      { numRuns: 20_000 },
    );
  });

  it('never starts resources before fencing for that epoch is confirmed (property)', () => {
    fc.assert(
      fc.property(snapshot, (s) => {
        const d = decideCycle(s);
        if (d.action !== 'activate') return true;
        const h = s.heartbeat;
        return (
          h.ok &&
          h.renewed &&
          (s.confirmedEpoch === d.epoch || (h.directive.action === 'activate' && h.directive.fence.confirmed && h.directive.epoch === d.epoch))
        );
      }),
      { numRuns: 20_000 },
    );
  });

  it('never fences or activates without a committed renewal, nor past the deadline (property)', () => {
    fc.assert(
      fc.property(snapshot, (s) => {
        const d = decideCycle(s);
        if (d.action !== 'fence' && d.action !== 'activate') return true;
        const pastDeadline = s.role !== 'passive' && s.role !== 'demoting' && (s.deadline === null || s.now >= s.deadline);
        return s.heartbeat.ok && s.heartbeat.renewed && !pastDeadline && s.role !== 'demoting';
      }),
      { numRuns: 20_000 },
    );
  });

  it('after an agent crash: stops leftovers unless the arbiter says the lease is ours, then adopts them', () => {
    const leftovers = { ...base, leftovers: true };
    assert.match(
      decideCycle(leftovers).reason,
      /^resources left running by a previous agent process, and this node does not hold their epoch \(node-a holds epoch 1\): stopping them$/,
    );
    assert.equal(decideCycle({ ...leftovers, heartbeat: { ok: false, error: 'down' } }).action, 'demote', 'no lease deadline: cannot keep serving');
    assert.equal(
      decideCycle({ ...leftovers, memory: { seen: 2, acted: 2 }, deadline: 12_000, heartbeat: { ok: true, directive: activate(2, true), renewed: true } }).action,
      'activate',
    );
    // The lease says epoch 2 is ours, but the leftovers run under the later epoch 5: the store went back.
    assert.equal(
      decideCycle({ ...leftovers, memory: { seen: 5, acted: 5 }, deadline: 12_000, heartbeat: { ok: true, directive: activate(2, true), renewed: true } }).action,
      'demote',
    );
    // Found by the simulator: a *new* epoch for this node means the peer may have written in
    // between; a mount from before must not write again. Stop first, fence and start clean.
    const newEpoch = decideCycle({ ...leftovers, deadline: 12_000, heartbeat: { ok: true, directive: activate(4, false), renewed: true } });
    assert.equal(newEpoch.action, 'demote');
    assert.match(newEpoch.reason, /granted epoch 4, not the 0 they run under; another node may have written since/);
  });

  it('a passive node polls slowly only while its peer is an active whose renewals land', () => {
    const t = TimingSchema.parse({});
    const fresh = activeWindowMs(t);
    assert.equal(passivePollIntervalMs(t, { role: 'active', leaseRemainingMs: fresh - 100 }), 5000);
    assert.equal(passivePollIntervalMs(t, { role: 'active', leaseRemainingMs: fresh - 2 * t.renewIntervalMs - 1 }), 500, 'renewals are late');
    assert.equal(passivePollIntervalMs(t, { role: 'demoting', leaseRemainingMs: fresh }), 500, 'the peer is letting go');
    assert.equal(passivePollIntervalMs(t, { role: 'passive', leaseRemainingMs: null }), 500, 'nobody active');
    assert.equal(passivePollIntervalMs(t, null), 500, 'the peer is silent');
  });

  it('the transition table is the only way between roles', () => {
    assert.doesNotThrow(() => assertTransition('passive', 'fencing'));
    assert.throws(() => assertTransition('passive', 'active'), /illegal role transition passive → active/);
    assert.throws(() => assertTransition('demoting', 'active'), /illegal/);
    for (const role of NODE_ROLES)
      assert.ok(
        TRANSITIONS.some((t) => t.from === role || t.to === role),
        `${role} is reachable`,
      );
  });
});
