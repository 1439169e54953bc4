import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CommandFailed } from '../../agent/executor.ts';
import { sysfsPaths } from '../../agent/resources/multipath.ts';
import { ResourceError, SafetyInDoubt } from '../../agent/resources/resource.ts';
import { hasRawIo, normalizeKey, parseKeys, parseReservation, ScsiReservation, supportsType5 } from '../../agent/resources/scsi-reservation.ts';
import { reservationKey } from '../../shared/reservation-key.ts';
import { resourceContext } from '../helpers/agent.ts';
import { fixture } from '../helpers/fixtures.ts';
import { hostFromListing } from '../helpers/sysfs.ts';

/** /proc/self/status of a root process (its effective capabilities: all of them). */
const ROOT_STATUS = 'Name:\tnode\nUmask:\t0022\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n';

describe('sg_persist parsers (real output)', () => {
  it('reads registered keys, with and without the INQUIRY lines', () => {
    assert.deepEqual(parseKeys(fixture('sg_persist--read-keys--no-keys').stdout), []);
    assert.deepEqual(parseKeys(fixture('sg_persist--read-keys--one-key').stdout), ['0x00000000000000a1']);
    assert.deepEqual(parseKeys(fixture('sg_persist--read-keys--two-keys').stdout), ['0x00000000000000a1', '0x00000000000000b1']);
    assert.deepEqual(parseKeys(fixture('sg_persist-noinq--read-keys--two-keys').stdout), ['0x00000000000000a1', '0x00000000000000b1']);
    assert.deepEqual(parseKeys(fixture('sg_persist--read-keys--after-preempt').stdout), ['0x00000000000000b1']);
    assert.throws(() => parseKeys('sg_persist: something else'), /unrecognised/);
  });

  it('reads the reservation holder and type', () => {
    assert.equal(parseReservation(fixture('sg_persist--read-reservation--none').stdout), null);
    assert.deepEqual(parseReservation(fixture('sg_persist--read-reservation--type5-held-by-a').stdout), {
      key: '0x00000000000000a1',
      type: 'Write Exclusive, registrants only',
    });
    assert.equal(parseReservation(fixture('sg_persist-noinq--read-reservation--type5-held-by-a').stdout)?.key, '0x00000000000000a1');
    assert.equal(parseReservation(fixture('sg_persist--read-reservation--type5-held-by-b').stdout)?.key, '0x00000000000000b1');
  });

  it('reads type-5 support from the capabilities', () => {
    assert.equal(supportsType5(fixture('sg_persist--report-capabilities').stdout), true);
    assert.equal(
      supportsType5(fixture('sg_persist--report-capabilities').stdout.replace('Write Exclusive, registrants only: 1', 'Write Exclusive, registrants only: 0')),
      false,
    );
  });

  it('normalises printed keys to 16 hex digits', () => {
    assert.equal(normalizeKey('0xA1'), '0x00000000000000a1');
    assert.equal(normalizeKey('0x17b0d5daf00be581'), '0x17b0d5daf00be581');
  });
});

/** Real sg_persist output with the lab's keys replaced by this cluster's. */
function keysOutput(name: string, keys: Record<string, string>): string {
  return Object.entries(keys).reduce((out, [lab, ours]) => out.replaceAll(lab, ours), fixture(name).stdout);
}

describe('scsi-reservation resource', () => {
  const DEV = '/dev/disk/by-id/wwn-0x6001405a1b2c3d4e5f60718293a4b5c6';

  it('sends a command again after a UNIT ATTENTION (exit 6), as after being preempted (seen in the lab)', async () => {
    const { ctx, exec, spec } = await resourceContext('node-a');
    const own = reservationKey(spec.id, 'node-a');
    // stderr as the lab's node-a printed it, registering again after node-b had preempted it.
    const unitAttention = {
      exitCode: 6,
      stdout: '',
      stderr: 'Additional sense: Registrations preempted\nPR out (Register and ignore existing key): Unit attention\nsg_persist failed: Unit attention\n',
    };
    const register = `sg_persist --no-inquiry --readonly --out --register-ignore --param-sark=${own} ${DEV}`;
    exec.on(register, unitAttention, { exitCode: 0, stdout: '', stderr: '' });
    exec.on(`sg_persist --no-inquiry --readonly --in --read-keys ${DEV}`, {
      exitCode: 0,
      stdout: keysOutput('sg_persist--read-keys--one-key', { '0xa1': own }),
      stderr: '',
    });
    exec.on(`sg_persist --no-inquiry --readonly --in --read-reservation ${DEV}`, {
      exitCode: 0,
      stdout: keysOutput('sg_persist--read-reservation--type5-held-by-a', { '0xa1': own }),
      stderr: '',
    });
    await new ScsiReservation(ctx).fence([]);
    assert.deepEqual(exec.lines().slice(0, 2), [register, register]);

    const stuck = await resourceContext('node-a');
    stuck.exec.on(register, unitAttention);
    await assert.rejects(new ScsiReservation(stuck.ctx).fence([]), /Unit attention/);
    assert.equal(stuck.exec.lines().filter((l) => l === register).length, 3, 'two retries, then the failure is reported');
  });

  it('fences: registers, preempt-aborts the named key, reserves type 5, verifies — exact argv', async () => {
    const { ctx, exec, spec } = await resourceContext('node-b');
    const own = reservationKey(spec.id, 'node-b');
    const victim = reservationKey(spec.id, 'node-a');
    exec
      .on(
        `sg_persist --no-inquiry --readonly --in --read-keys ${DEV}`,
        { exitCode: 0, stdout: keysOutput('sg_persist--read-keys--two-keys', { '0xa1': victim, '0xb1': own }), stderr: '' },
        {
          exitCode: 0,
          stdout: keysOutput('sg_persist--read-keys--after-preempt', { '0xb1': own }),
          stderr: '',
        },
      )
      .on(`sg_persist --no-inquiry --readonly --in --read-reservation ${DEV}`, {
        exitCode: 0,
        stdout: keysOutput('sg_persist--read-reservation--type5-held-by-b', { '0xb1': own }),
        stderr: '',
      });
    const r = new ScsiReservation(ctx);
    assert.deepEqual(await r.fence([victim]), [victim]);
    assert.deepEqual(exec.lines(), [
      `sg_persist --no-inquiry --readonly --out --register-ignore --param-sark=${own} ${DEV}`,
      `sg_persist --no-inquiry --readonly --in --read-keys ${DEV}`,
      `sg_persist --no-inquiry --readonly --out --preempt-abort --param-rk=${own} --param-sark=${victim} --prout-type=5 ${DEV}`,
      `sg_persist --no-inquiry --readonly --in --read-reservation ${DEV}`,
      `sg_persist --no-inquiry --readonly --in --read-keys ${DEV}`,
    ]);
  });

  it('fences a disk nobody holds: registers and reserves, preempts nothing', async () => {
    const { ctx, exec, spec } = await resourceContext('node-a');
    const own = reservationKey(spec.id, 'node-a');
    exec
      // Once registered, every read shows our key (the real one-key output, our key for 0xa1).
      .on(/--read-keys/, { exitCode: 0, stdout: keysOutput('sg_persist--read-keys--one-key', { '0xa1': own }), stderr: '' })
      .on(/--read-reservation/, 'sg_persist--read-reservation--none');
    assert.deepEqual(await new ScsiReservation(ctx).fence([reservationKey(spec.id, 'node-b')]), []);
    assert.ok(exec.lines().includes(`sg_persist --no-inquiry --readonly --out --reserve --param-rk=${own} --prout-type=5 ${DEV}`));
    assert.ok(!exec.lines().some((l) => l.includes('--preempt')));
  });

  it('refuses to finish fencing while a key the arbiter did not name is registered', async () => {
    const { ctx, exec, spec } = await resourceContext('node-b');
    const own = reservationKey(spec.id, 'node-b');
    const stranger = '0x00000000000000a1';
    exec
      .on(/--read-keys/, { exitCode: 0, stdout: keysOutput('sg_persist--read-keys--two-keys', { '0xb1': own }), stderr: '' })
      .on(/--read-reservation/, { exitCode: 0, stdout: keysOutput('sg_persist--read-reservation--type5-held-by-b', { '0xb1': own }), stderr: '' });
    await assert.rejects(
      new ScsiReservation(ctx).fence([reservationKey(spec.id, 'node-a')]),
      (e: Error) => e instanceof ResourceError && e.message.includes(stranger),
    );
    assert.ok(!exec.lines().some((l) => l.includes(`--param-sark=${stranger}`)), 'never preempts a key it was not told to');
  });

  it('fencing does not trust a read of the keys that lacks our own, just registered (it could hide a victim)', async () => {
    const { ctx, exec, spec } = await resourceContext('node-b');
    exec.on(/--read-keys/, 'sg_persist--read-keys--no-keys');
    await assert.rejects(new ScsiReservation(ctx).fence([reservationKey(spec.id, 'node-a')]), /read back without ours, just registered \(none\): not trusting that answer/);
    assert.ok(!exec.lines().some((l) => l.includes('--reserve ')), 'nothing reserved on that answer');
  });

  it("reports a failed preempt with the tool's own words (exit 24, reservation conflict)", async () => {
    const { ctx, exec, spec } = await resourceContext('node-b');
    exec
      .on(
        /--read-keys/,
        { exitCode: 0, stdout: keysOutput('sg_persist--read-keys--two-keys', { '0xa1': reservationKey(spec.id, 'node-a'), '0xb1': reservationKey(spec.id, 'node-b') }), stderr: '' },
      )
      .on(/--preempt-abort/, 'sg_persist--register--fenced-old-key-fails');
    await assert.rejects(
      new ScsiReservation(ctx).fence([reservationKey(spec.id, 'node-a')]),
      (e: Error) => e instanceof CommandFailed && /exited 24: .*Reservation conflict/.test(e.message),
    );
  });

  it('start never registers: without our key it fails, asking for fencing', async () => {
    const { ctx, exec } = await resourceContext('node-a');
    exec.on(/--read-keys/, 'sg_persist--read-keys--no-keys');
    await assert.rejects(new ScsiReservation(ctx).start(), /fencing must run first/);
    assert.ok(!exec.lines().some((l) => l.includes('--register')));
  });

  it('monitor: running when we hold it, stopped when unregistered, failed when our key is gone from a path we hold', async () => {
    const { ctx, exec, spec } = await resourceContext('node-a');
    const own = reservationKey(spec.id, 'node-a');
    exec
      .on(
        /--read-keys/,
        { exitCode: 0, stdout: keysOutput('sg_persist--read-keys--one-key', { '0xa1': own }), stderr: '' },
        'sg_persist--read-keys--after-preempt',
      )
      .on(/--read-reservation/, { exitCode: 0, stdout: keysOutput('sg_persist--read-reservation--type5-held-by-a', { '0xa1': own }), stderr: '' });
    const r = new ScsiReservation(ctx);
    assert.deepEqual(await r.monitor(), { state: 'running' });
    assert.deepEqual(await r.monitor(), { state: 'stopped' });
    assert.equal(await r.keyPresent(), false);
  });
});

describe('scsi-reservation resource on a dm-multipath LUN (two paths, from the lab)', () => {
  async function onMultipath(leaseRemainingMs = 8000, listing = 'sysfs-multipath--two-paths') {
    const { root, device } = hostFromListing(listing);
    const { ctx, exec, spec } = await resourceContext('node-a', { epoch: 1, confirmedEpoch: 1, leaseRemainingMs: () => leaseRemainingMs });
    const multipathCtx = { ...ctx, spec: { ...spec, storage: { ...spec.storage, devices: [device] } } };
    const own = reservationKey(spec.id, 'node-a');
    const keys = (n: number) => ({
      exitCode: 0,
      stdout: `  PR generation=0x4, ${n} registered reservation keys follow:\n${`    ${own}\n`.repeat(n)}`,
      stderr: '',
    });
    const held = { exitCode: 0, stdout: keysOutput('sg_persist--read-reservation--type5-held-by-a', { '0xa1': own }), stderr: '' };
    return { r: new ScsiReservation(multipathCtx, sysfsPaths(root)), exec, own, keys, held, spec };
  }

  it('fences: registers on each path, preempts (once, though the victim is registered on two paths) and reserves once for the LUN', async () => {
    const { r, exec, own, held, spec } = await onMultipath();
    const victim = reservationKey(spec.id, 'node-b');
    exec
      .on(
        /--read-keys/,
        // The old holder registered on its two paths: its key listed twice (as the lab's crash showed).
        { exitCode: 0, stdout: `  PR generation=0x4, 3 registered reservation keys follow:\n    ${victim}\n    ${victim}\n    ${own}\n`, stderr: '' },
        { exitCode: 0, stdout: `    ${own}\n    ${own}\n`.replace(/^/, '  PR generation=0x5, 2 registered reservation keys follow:\n'), stderr: '' },
      )
      .on(/--read-reservation/, held);
    assert.deepEqual(await r.fence([victim]), [victim]);
    assert.deepEqual(exec.lines(), [
      `sg_persist --no-inquiry --readonly --out --register-ignore --param-sark=${own} /dev/sda`,
      `sg_persist --no-inquiry --readonly --out --register-ignore --param-sark=${own} /dev/sdb`,
      `sg_persist --no-inquiry --readonly --in --read-keys /dev/sda`,
      `sg_persist --no-inquiry --readonly --out --preempt-abort --param-rk=${own} --param-sark=${victim} --prout-type=5 /dev/sda`,
      `sg_persist --no-inquiry --readonly --in --read-reservation /dev/sda`,
      `sg_persist --no-inquiry --readonly --in --read-keys /dev/sda`,
    ]);
  });

  it('a path that is not running (transport-offline, one path cut in the lab) gets no command; the other carries on', async () => {
    const { r, exec, own, held, keys } = await onMultipath(8000, 'sysfs-multipath--one-path-cut');
    exec.on(/--read-keys/, keys(1)).on(/--read-reservation/, held);
    assert.deepEqual(await r.fence([]), []);
    assert.ok(exec.lines().every((l) => l.endsWith(' /dev/sda')), exec.lines().join('\n'));
    assert.ok(exec.lines().includes(`sg_persist --no-inquiry --readonly --out --register-ignore --param-sark=${own} /dev/sda`));
  });

  it('monitor asks each path for its own registration; a path without our key, beside one with it, is registered again under the lease', async () => {
    const { r, exec, own, held } = await onMultipath();
    exec
      .on(`sg_persist --no-inquiry --readonly --out --register --param-rk=${own} --param-sark=${own} /dev/sdb`, 'sg_persist--register-same-key--path-unregistered')
      .on(/--read-reservation/, held);
    assert.deepEqual(await r.monitor(), { state: 'running' });
    assert.deepEqual(exec.lines(), [
      `sg_persist --no-inquiry --readonly --out --register --param-rk=${own} --param-sark=${own} /dev/sda`,
      `sg_persist --no-inquiry --readonly --out --register --param-rk=${own} --param-sark=${own} /dev/sdb`,
      `sg_persist --no-inquiry --readonly --out --register-ignore --param-sark=${own} /dev/sdb`,
      `sg_persist --no-inquiry --readonly --in --read-reservation /dev/sda`,
    ]);
  });

  it('registered with no reservation held (the nexus that reserved was lost): reserves again at once', async () => {
    const { r, exec, own } = await onMultipath();
    exec.on(/--read-reservation/, 'sg_persist--read-reservation--none');
    assert.deepEqual(await r.monitor(), { state: 'running' });
    assert.ok(exec.lines().includes(`sg_persist --no-inquiry --readonly --out --reserve --param-rk=${own} --prout-type=5 /dev/sda`));
  });

  it('without a lease to do it in, a path missing our key is reported, not registered', async () => {
    const { r, exec, own, held } = await onMultipath(0);
    exec.on(`sg_persist --no-inquiry --readonly --out --register --param-rk=${own} --param-sark=${own} /dev/sdb`, 'sg_persist--register-same-key--path-unregistered').on(/--read-reservation/, held);
    const m = await r.monitor();
    assert.equal(m.state, 'failed');
    assert.match((m as { reason: string }).reason, /our key is missing on \/dev\/sdb/);
    assert.ok(!exec.lines().some((l) => l.includes('--register-ignore')));
  });

  it('our key on no path is being fenced (stopped), and nothing is registered', async () => {
    const { r, exec } = await onMultipath();
    exec.on(/--out --register --param-rk/, 'sg_persist--register-same-key--path-unregistered');
    assert.deepEqual(await r.monitor(), { state: 'stopped' });
    assert.ok(!exec.lines().some((l) => l.includes('--register-ignore')));
  });

  it('a repair that does not answer within the lease is a safety doubt (the node resets)', async () => {
    const { r, exec, own } = await onMultipath();
    exec
      .on(`sg_persist --no-inquiry --readonly --out --register --param-rk=${own} --param-sark=${own} /dev/sdb`, 'sg_persist--register-same-key--path-unregistered')
      .on(/--register-ignore/, { exitCode: null as unknown as number, stdout: '', stderr: '' });
    const timedOut = exec.run.bind(exec);
    exec.run = async (c) => ({ ...(await timedOut(c)), ...(c.argv.includes('--register-ignore') ? { timedOut: true } : {}) });
    await assert.rejects(r.monitor(), (e: Error) => e instanceof SafetyInDoubt && /did not complete within our lease/.test(e.message));
  });

  it('a path that comes back running is asked at the next key check (every pass), and registered if it lacks the key', async () => {
    const { root, device } = hostFromListing('sysfs-multipath--one-path-cut');
    const { ctx, exec, spec } = await resourceContext('node-a', { epoch: 1, confirmedEpoch: 1, leaseRemainingMs: () => 8000 });
    const r = new ScsiReservation({ ...ctx, spec: { ...spec, storage: { ...spec.storage, devices: [device] } } }, sysfsPaths(root));
    const own = reservationKey(spec.id, 'node-a');
    exec
      .on(/--read-keys/, { exitCode: 0, stdout: `  PR generation=0x5, 1 registered reservation key follows:\n    ${own}\n`, stderr: '' })
      .on(/--read-reservation/, 'sg_persist--read-reservation--none')
      .on(`sg_persist --no-inquiry --readonly --out --register --param-rk=${own} --param-sark=${own} /dev/sdb`, 'sg_persist--register-same-key--path-unregistered');
    await r.fence([]);
    assert.equal(await r.keyPresent(), true);
    exec.calls.length = 0;
    assert.equal(await r.keyPresent(), true, 'nothing changed: one read of the keys');
    assert.deepEqual(exec.lines(), ['sg_persist --no-inquiry --readonly --in --read-keys /dev/sda']);
    writeFileSync(join(root, 'sys/block/sdb/device/state'), 'running\n');
    exec.calls.length = 0;
    assert.equal(await r.keyPresent(), true);
    assert.deepEqual(exec.lines(), [
      'sg_persist --no-inquiry --readonly --in --read-keys /dev/sda',
      `sg_persist --no-inquiry --readonly --out --register --param-rk=${own} --param-sark=${own} /dev/sdb`,
      `sg_persist --no-inquiry --readonly --out --register-ignore --param-sark=${own} /dev/sdb`,
    ]);
    exec.calls.length = 0;
    await r.keyPresent();
    assert.deepEqual(exec.lines(), ['sg_persist --no-inquiry --readonly --in --read-keys /dev/sda'], 'known again: not asked again');
  });

  it('no running path at all: every action fails, naming each path and its state', async () => {
    const { root, device } = hostFromListing('sysfs-multipath--one-path-cut', (p, v) => (p.endsWith('/device/state') ? 'transport-offline' : v));
    const { ctx, spec } = await resourceContext('node-a');
    const r = new ScsiReservation({ ...ctx, spec: { ...spec, storage: { ...spec.storage, devices: [device] } } }, sysfsPaths(root), async () => ROOT_STATUS);
    await assert.rejects(r.keyPresent(), /no running path \(sda transport-offline, sdb transport-offline\)/);
    assert.deepEqual(await r.validate(), [`scsi-reservation: ${device}: no running path (sda transport-offline, sdb transport-offline)`]);
  });

  it('its preflight requires CAP_SYS_RAWIO, which every PR OUT through a read-only descriptor needs', async () => {
    assert.equal(hasRawIo(ROOT_STATUS), true);
    // root under CapabilityBoundingSet=~CAP_SYS_RAWIO: every bit but 17
    assert.equal(hasRawIo('Name:\tnode\nCapEff:\t000001fffffdffff\n'), false);
    assert.equal(hasRawIo('Name:\tnode\nCapEff:\t0000000000000000\n'), false);
    assert.equal(hasRawIo('Name:\tnode\n'), false);
    const { ctx, exec } = await resourceContext('node-a');
    exec.on(/--report-capabilities/, 'sg_persist--report-capabilities');
    const without = new ScsiReservation(ctx, undefined, async () => 'CapEff:\t000001fffffdffff\n');
    assert.deepEqual(await without.validate(), [
      'the agent lacks CAP_SYS_RAWIO, without which it cannot register or preempt a key: run it as root, with the capability kept',
    ]);
    assert.deepEqual(await new ScsiReservation(ctx, undefined, async () => ROOT_STATUS).validate(), []);
  });

  it('a path being cut (still "running" in sysfs, its commands timing out) is served around; only when no path answers does a check fail', async () => {
    const { r, exec, own, keys, held } = await onMultipath();
    // What the executor returns for a command killed at its timeout.
    const hung = { exitCode: null as unknown as number, stdout: '', stderr: '' };
    exec.on(/ \/dev\/sda$/, hung).on(/--read-keys/, keys(2)).on(/--read-reservation/, held);
    assert.deepEqual(await r.monitor(), { state: 'running' }, 'no resource failure (the lab restarted everything over one cut path)');
    assert.ok(!exec.lines().some((l) => l.includes('--register-ignore')), 'a silent path is not "missing our key": nothing is registered through it');
    exec.calls.length = 0;
    assert.equal(await r.keyPresent(), true, 'the key read through the other path');
    assert.deepEqual(exec.lines(), [
      'sg_persist --no-inquiry --readonly --in --read-keys /dev/sda',
      'sg_persist --no-inquiry --readonly --in --read-keys /dev/sdb',
      // sda left the known set when it did not answer: it is asked again (it still reads "running").
      `sg_persist --no-inquiry --readonly --out --register --param-rk=${own} --param-sark=${own} /dev/sda`,
    ]);
    const silent = await onMultipath();
    silent.exec.on(/^sg_persist /, hung);
    await assert.rejects(silent.r.monitor(), /checking our key on \/dev\/sda, \/dev\/sdb/);
    await assert.rejects(silent.r.keyPresent(), /reading keys of \/dev\/sda, \/dev\/sdb/);
  });

  it('the key check reads the LUN once, through its first running path; gone only when every path, asked again, agrees', async () => {
    const { r, exec, keys } = await onMultipath();
    exec.on(/--read-keys/, keys(2), 'sg_persist--read-keys--after-preempt');
    assert.equal(await r.keyPresent(), true);
    assert.deepEqual(exec.lines(), ['sg_persist --no-inquiry --readonly --in --read-keys /dev/sda']);
    exec.calls.length = 0;
    assert.equal(await r.keyPresent(), false);
    assert.deepEqual(exec.lines(), [
      'sg_persist --no-inquiry --readonly --in --read-keys /dev/sda',
      'sg_persist --no-inquiry --readonly --in --read-keys /dev/sda',
      'sg_persist --no-inquiry --readonly --in --read-keys /dev/sdb',
    ]);
  });

  it('one answer without our key is not a fencing when another path shows it (a path cut under the command answered "no keys")', async () => {
    const { r, exec, keys } = await onMultipath();
    exec.on(/--read-keys \/dev\/sda$/, 'sg_persist--read-keys--no-keys').on(/--read-keys \/dev\/sdb$/, keys(2));
    assert.equal(await r.keyPresent(), true);
    assert.deepEqual(exec.lines().slice(0, 3), [
      'sg_persist --no-inquiry --readonly --in --read-keys /dev/sda',
      'sg_persist --no-inquiry --readonly --in --read-keys /dev/sda',
      'sg_persist --no-inquiry --readonly --in --read-keys /dev/sdb',
    ]);
    const hung = { exitCode: null as unknown as number, stdout: '', stderr: '' };
    const silent = await onMultipath();
    silent.exec.on(/--read-keys \/dev\/sda$/, 'sg_persist--read-keys--no-keys', hung).on(/--read-keys \/dev\/sdb$/, hung);
    await assert.rejects(silent.r.keyPresent(), /one read of the keys lacked ours and no path answered again/, 'unknown, not gone');
  });
});
