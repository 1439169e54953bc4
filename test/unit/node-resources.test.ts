import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { Exports, parseExportfs } from '../../agent/resources/exports.ts';
import { Filesystem, parseFindmnt, parseFuserPids } from '../../agent/resources/filesystem.ts';
import { FloatingIp, GARP_COUNT, parseIpv4Addresses } from '../../agent/resources/floating-ip.ts';
import { GRACE_DETAIL, type JournalMode, NFS_CONF, NFSDCLD_DB, NfsServer, nfsConf, SCOPE_DROPIN, scopeDropIn, sqliteJournalMode } from '../../agent/resources/nfs-server.ts';
import { lvDeviceName, parseAutoactivation, parseSystemId, parseVgOwner, sysfsActiveVolumes, VolumeGroup } from '../../agent/resources/volume-group.ts';
import { resourceContext } from '../helpers/agent.ts';
import { tempDir } from '../helpers/control-plane.ts';
import { fixture } from '../helpers/fixtures.ts';
import { addDeviceMapperFromByIdListing, hostFromListing } from '../helpers/sysfs.ts';

/** Lets the owner read that VolumeGroup.prepare() leaves running come back. */
const settled = () => new Promise((ok) => setImmediate(ok));

/** Real output with the lab's names replaced by the example spec's. */
function renamed(name: string, pairs: Record<string, string>) {
  const f = fixture(name);
  const sub = (s: string) => Object.entries(pairs).reduce((out, [a, b]) => out.replaceAll(a, b), s);
  return { exitCode: f.exitCode, stdout: sub(f.stdout), stderr: sub(f.stderr) };
}
const LVM = { vgha: 'vg_nfs', '"data"': '"lv_export"' };
/** The real mount, as the example spec's filesystem (its LV at its mount point). */
const OURS = { '/srv/ha': '/srv/nfs', 'vgha-data': 'vg_nfs-lv_export' };

describe('LVM parsers (real output)', () => {
  it('reads the local system ID, or its absence', () => {
    assert.equal(parseSystemId(fixture('lvm-systemid--node-a').stdout), 'nodea');
    assert.equal(parseSystemId(fixture('lvm-systemid--no-systemid-configured').stdout), null);
  });
  it('reads the VG owner, including a foreign VG', () => {
    assert.equal(parseVgOwner(fixture('vgs--json--owned-by-a-active').stdout, 'vgha'), 'nodea');
    assert.equal(parseVgOwner(fixture('vgs--json--foreign--node-b').stdout, 'vgha'), 'nodea');
    assert.equal(parseVgOwner(fixture('vgs--json--owned-by-b').stdout, 'vgha'), 'nodeb');
    assert.equal(parseVgOwner(fixture('vgs--json--owned-by-b').stdout, 'other'), undefined);
  });
  it('reads whether the VG autoactivates', () => {
    assert.equal(parseAutoactivation(fixture('vgs--json--autoactivation-enabled').stdout, 'vg_fixture'), true);
    assert.equal(parseAutoactivation(fixture('vgs--json--autoactivation-disabled').stdout, 'vg_fixture'), false);
    assert.equal(parseAutoactivation(fixture('vgs--json--autoactivation-disabled').stdout, 'other'), undefined);
  });
  it("names an LV's device-mapper device as LVM does (hyphens doubled)", () => {
    // The real LV vgha/data is dm-name-vgha-data (ls--dev-disk-by-id--with-lv).
    assert.equal(lvDeviceName('vgha', 'data'), 'vgha-data');
    assert.equal(lvDeviceName('vg-a', 'lv-b'), 'vg--a-lv--b');
    assert.notEqual(lvDeviceName('a-b', 'c'), lvDeviceName('a', 'b-c'));
  });
  it("reads the active LVs from sysfs: LVM's devices, not a multipath map's", async () => {
    // A node with its LUN's multipath map (dm-0) and the real LV of another capture at dm-1.
    const { root } = hostFromListing('sysfs-multipath--two-paths');
    assert.deepEqual(await sysfsActiveVolumes(root)(), []);
    addDeviceMapperFromByIdListing(root, 'ls--dev-disk-by-id--with-lv', () => 'dm-1');
    assert.deepEqual(await sysfsActiveVolumes(root)(), ['vgha-data']);
  });
});

describe('volume-group resource', () => {
  it('takes the VG over from the old owner, then activates — exact argv', async () => {
    const { ctx, exec } = await resourceContext('node-b', { epoch: 2, confirmedEpoch: 2 });
    exec.on('lvm systemid', renamed('lvm-systemid--node-a', { nodea: 'nodeb' })).on(/^vgs /, renamed('vgs--json--foreign--node-b', LVM));
    await new VolumeGroup(ctx).start();
    assert.deepEqual(exec.lines(), [
      'lvm systemid',
      'vgs --foreign --reportformat json -o vg_name,vg_systemid vg_nfs',
      'vgchange --config local/extra_system_ids=["nodea"] --systemid nodeb vg_nfs',
      'vgchange -ay vg_nfs',
    ]);
  });

  it("reads its system ID and the VG's owner ahead (prepare): a takeover runs only the two vgchanges", async () => {
    const { ctx, exec } = await resourceContext('node-b', { epoch: 2, confirmedEpoch: 2 });
    exec.on('lvm systemid', renamed('lvm-systemid--node-a', { nodea: 'nodeb' })).on(/^vgs /, renamed('vgs--json--foreign--node-b', LVM));
    exec.on(/--systemid/, 'vgchange-systemid--takeover-by-b').on('vgchange -ay vg_nfs', 'vgchange-ay--node-b');
    const vg = new VolumeGroup(ctx);
    await vg.prepare();
    await settled();
    assert.deepEqual(exec.lines(), ['lvm systemid', 'vgs --foreign --reportformat json -o vg_name,vg_systemid vg_nfs']);
    await vg.start();
    assert.deepEqual(exec.lines().slice(2), ['vgchange --config local/extra_system_ids=["nodea"] --systemid nodeb vg_nfs', 'vgchange -ay vg_nfs']);
  });

  it("prepare does not wait for the owner: the preparations after it serve a takeover right after the agent's start", { timeout: 5000 }, async () => {
    const { ctx, exec } = await resourceContext('node-b');
    exec.on('lvm systemid', renamed('lvm-systemid--node-a', { nodea: 'nodeb' })).on(/^vgs /, renamed('vgs--json--foreign--node-b', LVM));
    const answer = exec.run.bind(exec);
    let unblock!: () => void;
    const blocked = new Promise<void>((ok) => (unblock = ok));
    exec.run = async (command) => {
      const result = answer(command);
      if (command.argv[0] === 'vgs') await blocked;
      return result;
    };
    await new VolumeGroup(ctx).prepare();
    assert.deepEqual(exec.lines(), ['lvm systemid', 'vgs --foreign --reportformat json -o vg_name,vg_systemid vg_nfs'], 'returned with vgs still running');
    unblock();
  });

  /** node-b prepared while it owned the VG (its agent started then); the peer (nodea) has taken the VG over since. */
  async function preparedAsOwnerThenTakenOver() {
    const { ctx, exec } = await resourceContext('node-b', { epoch: 4, confirmedEpoch: 4 });
    exec
      .on('lvm systemid', renamed('lvm-systemid--node-a', { nodea: 'nodeb' }))
      .on(/^vgs /, renamed('vgs--json--owned-by-b', LVM), renamed('vgs--json--foreign--node-b', LVM))
      .on(/--systemid/, 'vgchange-systemid--takeover-by-b')
      .on('vgchange -ay vg_nfs', 'vgchange-ay--node-b');
    const vg = new VolumeGroup(ctx);
    await vg.prepare();
    await settled();
    exec.calls.length = 0;
    return { vg, exec };
  }
  const TAKEOVER = ['vgchange --config local/extra_system_ids=["nodea"] --systemid nodeb vg_nfs', 'vgchange -ay vg_nfs'];

  it('remembers an owner other than itself only: its first takeover after its own term reads the owner, and the next ones name it', async () => {
    const { vg, exec } = await preparedAsOwnerThenTakenOver();
    await vg.start();
    assert.deepEqual(exec.lines(), ['vgs --foreign --reportformat json -o vg_name,vg_systemid vg_nfs', ...TAKEOVER]);
    exec.calls.length = 0;
    await vg.start();
    assert.deepEqual(exec.lines(), TAKEOVER);
  });

  it("told of the peer's takeover (the agent loop does, some way into the peer's term): its next takeover runs only the two vgchanges", async () => {
    const { vg, exec } = await preparedAsOwnerThenTakenOver();
    vg.afterPeerTakeover();
    await settled();
    exec.calls.length = 0;
    await vg.start();
    assert.deepEqual(exec.lines(), TAKEOVER);
  });

  it('reads the owner when LVM refuses the one it remembers', async () => {
    // It read its peer as the owner; its own term since left the VG its own (no takeover by the peer).
    const { ctx, exec } = await resourceContext('node-b', { epoch: 5, confirmedEpoch: 5 });
    exec
      .on('lvm systemid', renamed('lvm-systemid--node-a', { nodea: 'nodeb' }))
      .on(/^vgs /, renamed('vgs--json--foreign--node-b', LVM), renamed('vgs--json--owned-by-b', LVM))
      .on(/--systemid/, { exitCode: 5, stdout: '', stderr: '' })
      .on('vgchange -ay vg_nfs', 'vgchange-ay--node-b');
    const vg = new VolumeGroup(ctx);
    await vg.prepare();
    await settled();
    await vg.start();
    assert.deepEqual(exec.lines().slice(2), [
      'vgchange --config local/extra_system_ids=["nodea"] --systemid nodeb vg_nfs',
      'vgs --foreign --reportformat json -o vg_name,vg_systemid vg_nfs',
      'vgchange -ay vg_nfs',
    ]);
  });

  it('refuses to activate before fencing is confirmed for the epoch', async () => {
    const { ctx, exec } = await resourceContext('node-b', { epoch: 2, confirmedEpoch: 1 });
    await assert.rejects(new VolumeGroup(ctx).start(), /fencing is not confirmed for epoch 2/);
    assert.deepEqual(exec.calls, [], 'not a single LVM command ran');
  });

  it("activates without a takeover when already the owner; monitor reads the kernel's table, no command", async () => {
    const { ctx, exec } = await resourceContext('node-a');
    exec.on('lvm systemid', 'lvm-systemid--node-a').on(/^vgs /, renamed('vgs--json--owned-by-a-active', LVM));
    // The real LV's device (vgha-data) under the example spec's names, as OURS renames it.
    let active = [OURS['vgha-data']];
    const vg = new VolumeGroup(ctx, async () => active);
    await vg.start();
    assert.ok(!exec.lines().some((l) => l.includes('--systemid')));
    const commands = exec.lines().length;
    assert.deepEqual(await vg.monitor(), { state: 'running' });
    active = ['vg_nfs-lv_other', '360014051e90c20474cc48cf91d83c194'];
    assert.deepEqual(await vg.monitor(), { state: 'stopped' });
    assert.equal(exec.lines().length, commands, 'the monitor ran no command');
  });

  it("stop deactivates its own VG with one command: a switchover's clients wait for it", async () => {
    const { ctx, exec } = await resourceContext('node-a');
    exec.on(/^vgchange -an /, 'vgchange-an--node-a');
    await new VolumeGroup(ctx).stop();
    assert.deepEqual(exec.lines(), ['vgchange -an vg_nfs']);
  });

  it('stop deactivates a VG the new active already took over, naming it as an extra system ID (seen in the lab)', async () => {
    const { ctx, exec } = await resourceContext('node-a');
    // LVM refuses a foreign VG's -an as it refuses its -ay (the fixture); here the roles are swapped.
    const SWAPPED = { ...LVM, nodea: 'nodeb', 'local system ID nodeb': 'local system ID nodea' };
    exec
      .on('vgchange -an vg_nfs', renamed('vgchange-ay--foreign-refused--node-b', SWAPPED))
      .on('lvm systemid', 'lvm-systemid--node-a')
      .on(/^vgs /, renamed('vgs--json--foreign--node-b', { ...LVM, nodea: 'nodeb' }));
    await new VolumeGroup(ctx).stop();
    assert.deepEqual(exec.lines().at(-1), 'vgchange --config local/extra_system_ids=["nodeb"] -an vg_nfs');
  });

  it("stop reports LVM's own refusal of its own VG (an LV still open), and does not retry", async () => {
    const { ctx, exec } = await resourceContext('node-a');
    const busy = { exitCode: 5, stdout: '', stderr: '  Logical volume vg_nfs/lv_export in use.\n  Can\'t deactivate volume group "vg_nfs" with 1 open logical volume(s)\n' };
    exec.on('vgchange -an vg_nfs', busy).on('lvm systemid', 'lvm-systemid--node-a').on(/^vgs /, renamed('vgs--json--owned-by-a-active', LVM));
    await assert.rejects(new VolumeGroup(ctx).stop(), /deactivating VG vg_nfs.*open logical volume/s);
    assert.equal(exec.lines().filter((l) => l.startsWith('vgchange')).length, 1);
  });

  it('validation: refuses a VG that LVM would autoactivate at boot, with the command that fixes it', async () => {
    const AUTO = { ...LVM, vg_fixture: 'vg_nfs' };
    for (const [file, expected] of [
      ['vgs--json--autoactivation-enabled', ['LVM autoactivation is on for volume group vg_nfs: turn it off with vgchange --setautoactivation n vg_nfs']],
      ['vgs--json--autoactivation-disabled', []],
    ] as const) {
      const { ctx, exec } = await resourceContext('node-a');
      exec
        .on('lvm systemid', 'lvm-systemid--node-a')
        .on(/vg_systemid/, renamed('vgs--json--owned-by-a-active', LVM))
        .on(/vg_autoactivation/, renamed(file, AUTO));
      assert.deepEqual(await new VolumeGroup(ctx).validate(), expected);
      assert.equal(exec.lines().at(-1), 'vgs --foreign --reportformat json -o vg_name,vg_autoactivation vg_nfs');
    }
  });

  it('a node without an LVM system ID fails validation with the fix', async () => {
    const { ctx, exec } = await resourceContext('node-a');
    exec.on('lvm systemid', 'lvm-systemid--no-systemid-configured');
    assert.match((await new VolumeGroup(ctx).validate())[0]!, /no LVM system ID is configured.*system_id_source/);
  });
});

describe('filesystem resource', () => {
  it('parses findmnt and fuser (real output)', () => {
    assert.deepEqual(parseFindmnt(fixture('findmnt--json--mounted').stdout), {
      target: '/srv/ha',
      source: '/dev/mapper/vgha-data',
      fstype: 'ext4',
      uuid: undefined,
    });
    assert.equal(parseFindmnt(fixture('findmnt--json--not-mounted').stdout), null);
    assert.deepEqual(parseFuserPids(fixture('fuser--vm--busy').stdout), [1341, 1342]);
    assert.deepEqual(parseFuserPids(fixture('fuser--m--busy').stdout), [1341, 1342]);
    assert.deepEqual(parseFuserPids(fixture('fuser--vm--not-busy').stdout), []);
  });

  it("mounts by UUID with the spec's type and options — exact argv", async () => {
    const { ctx, exec, spec } = await resourceContext();
    spec.storage.filesystem.options = ['noatime'];
    exec.on(/^findmnt /, 'findmnt--json--not-mounted');
    await new Filesystem(ctx).start();
    assert.deepEqual(exec.lines(), [
      'findmnt -J -o TARGET,SOURCE,FSTYPE,UUID /srv/nfs',
      'mount -t ext4 -o X-mount.mkdir,noatime UUID=3f1c2b7e-9a4d-4e8b-b6f2-1c0d9e8a7b65 /srv/nfs',
    ]);
  });

  it('a busy unmount stops the users (TERM, then KILL) and retries', async () => {
    const { ctx, exec } = await resourceContext();
    const mounted = renamed('findmnt--json--mounted', OURS);
    exec
      .on(/^findmnt /, mounted)
      .on(/^fuser /, 'fuser--m--busy')
      .on(/^umount /, 'umount--busy-fails', 'umount--busy-fails', { exitCode: 0, stdout: '', stderr: '' });
    const signals: [number, string][] = [];
    await new Filesystem(
      ctx,
      (pid, sig) => signals.push([pid, sig]),
      async () => {},
    ).stop();
    // The fixture's PIDs; the agent never signals itself (this test's PID may be one of them).
    const users = [1341, 1342].filter((p) => p !== process.pid);
    assert.deepEqual(signals, [...users.map((p) => [p, 'SIGTERM']), ...users.map((p) => [p, 'SIGKILL'])]);
    assert.equal(exec.lines().filter((l) => l === 'umount /srv/nfs').length, 3);
  });

  it('never unmounts, nor signals the users of, a filesystem that is not the cluster’s (e.g. a mount point typo)', async () => {
    const { ctx, exec, spec } = await resourceContext();
    spec.storage.filesystem.mountPoint = '/srv/ha';
    // The real mount of another LV (vgha/data) at that path, with users.
    exec
      .on(/^findmnt /, 'findmnt--json--mounted')
      .on(/^fuser /, 'fuser--m--busy')
      .on(/^umount /, 'umount--busy-fails');
    const signals: number[] = [];
    const fs = new Filesystem(
      ctx,
      (pid) => signals.push(pid),
      async () => {},
    );
    await fs.stop();
    assert.deepEqual(exec.lines(), ['findmnt -J -o TARGET,SOURCE,FSTYPE,UUID /srv/ha'], 'only looked');
    assert.deepEqual(signals, []);
    assert.match(((await fs.monitor()) as { reason: string }).reason, /holds \/dev\/mapper\/vgha-data, not 3f1c2b7e/);
    await assert.rejects(fs.start(), /has another filesystem mounted \(\/dev\/mapper\/vgha-data\)/);
  });

  it('stop fails (escalation to the caller) when still busy after SIGKILL', async () => {
    const { ctx, exec } = await resourceContext();
    exec
      .on(/^findmnt /, renamed('findmnt--json--mounted', OURS))
      .on(/^fuser /, 'fuser--m--busy')
      .on(/^umount /, 'umount--busy-fails');
    await assert.rejects(
      new Filesystem(
        ctx,
        () => {},
        async () => {},
      ).stop(),
      /still busy after SIGKILL/,
    );
  });
});

/** What the nfs-server monitor reads, in one cat: the thread count, then whether grace has ended. */
const READ_NFSD = 'cat /proc/fs/nfsd/threads /proc/fs/nfsd/v4_end_grace';
/** Serving, its grace period over (the kernel's v4_end_grace reads Y or N: fs/nfsd/nfsctl.c). */
const NFSD_SERVING = { exitCode: 0, stdout: '8\nY\n', stderr: '' };

/** Every mount point, one per line (findmnt -rn -o TARGET): the system's, and `extra`. */
const LIST_MOUNTS = 'findmnt -rn -o TARGET';
/** A journal-mode reader that answers `mode` and records the paths it was asked for. */
const journal = (mode: JournalMode, asked: string[]) => async (path: string) => {
  asked.push(path);
  return mode;
};
const mountPoints = (...extra: string[]) => ({ exitCode: 0, stdout: ['/', '/run', '/var/lib/nfs/rpc_pipefs', '/srv/nfs', ...extra].join('\n') + '\n', stderr: '' });

/** nfsd's settings and the scope drop-in written where absent, and systemd reloaded (start, or prepare ahead of it). */
const CONFIGURE_NFSD = [
  `cat ${NFS_CONF}`,
  'mkdir -p /etc/nfs.conf.d',
  `tee ${NFS_CONF}`,
  `cat ${SCOPE_DROPIN}`,
  'mkdir -p /run/systemd/system/nfs-server.service.d',
  `tee ${SCOPE_DROPIN}`,
  'systemctl daemon-reload',
];

/** What prepare() starts that holds no state: nfsd's module and control filesystem, rpc_pipefs, rpcbind. No nfsd thread. */
const PREPARE_KERNEL = ['systemctl start proc-fs-nfsd.mount rpc_pipefs.target', 'systemctl start rpcbind.service'];

describe('nfs-server resource', () => {
  it("validation: the VIP needs a name (sm-notify sends NFSv3 clients nothing from a nameless address), and nfs-server must not start at boot", async () => {
    const disabled = { exitCode: 1, stdout: 'disabled\n', stderr: '' };
    const named = await resourceContext();
    named.exec.on('systemctl is-enabled nfs-server', disabled).on('getent hosts 10.88.0.100', 'getent-hosts--named');
    assert.deepEqual(await new NfsServer(named.ctx).validate(), []);
    assert.deepEqual(named.exec.lines(), ['systemctl is-enabled nfs-server', 'getent hosts 10.88.0.100']);

    const nameless = await resourceContext();
    nameless.exec.on('systemctl is-enabled nfs-server', { exitCode: 0, stdout: 'enabled\n', stderr: '' }).on(/^getent /, 'getent-hosts--no-name');
    const problems = await new NfsServer(nameless.ctx).validate();
    assert.equal(problems.length, 2);
    assert.match(problems[0]!, /enabled at boot.*systemctl disable nfs-server/);
    assert.match(problems[1]!, /the VIP 10\.88\.0\.100 has no host name here .*add "10\.88\.0\.100 <its name>" to \/etc\/hosts on both nodes/);
  });

  it('binds the reclaim state, writes the settings and the scope drop-in, starts nfsd, notifies v3 clients — exact argv', async () => {
    const { ctx, exec, spec } = await resourceContext();
    // One bind (sm) left from before: the others are bound, that one is not bound twice.
    exec
      .on(LIST_MOUNTS, mountPoints('/var/lib/nfs/sm'))
      .on(/^cat /, { exitCode: 1, stdout: '', stderr: 'cat: No such file or directory' })
      .on(/^sqlite3 /, { exitCode: 0, stdout: 'wal\n', stderr: '' });
    const asked: string[] = [];
    await new NfsServer(ctx, journal('rollback', asked)).start();
    const state = spec.nfs.stateDir;
    const dirs = ['nfsdcld', 'v4recovery', 'sm', 'sm.bak'];
    assert.deepEqual(exec.lines(), [
      `mkdir -p ${dirs.map((d) => `${state}/${d} /var/lib/nfs/${d}`).join(' ')}`,
      LIST_MOUNTS,
      ...['nfsdcld', 'v4recovery', 'sm.bak'].map((d) => `mount --bind ${state}/${d} /var/lib/nfs/${d}`),
      // nfsdcld's database, bound in place and still in rollback-journal mode: switched once, before nfsdcld starts.
      `sqlite3 ${NFSDCLD_DB} PRAGMA journal_mode=WAL;`,
      ...CONFIGURE_NFSD,
      'systemctl start nfs-server',
      'systemd-run --no-block --collect --unit nfs-ha-sm-notify sm-notify -d -f -v 10.88.0.100',
    ]);
    assert.deepEqual(asked, [NFSDCLD_DB]);
    assert.equal(
      nfsConf(spec),
      '# Written by nfs-ha; both nodes carry the same values. Do not edit: the next start rewrites it.\n[nfsd]\ngrace-time=15\nlease-time=15\n',
    );
    assert.match(
      scopeDropIn('nfs-prod'),
      /^ExecStart=\nExecStart=\/usr\/bin\/unshare --uts \/bin\/sh -c 'hostname "\$\$0" && exec "\$\$@"' nfs-prod \/usr\/sbin\/rpc\.nfsd$/m,
    );
  });

  it('a takeover does not reload systemd when the files are already in place, nor run sqlite3 when the database is in WAL mode', async () => {
    const { ctx, exec, spec } = await resourceContext();
    exec
      .on(LIST_MOUNTS, mountPoints())
      .on(`cat ${NFS_CONF}`, { exitCode: 0, stdout: nfsConf(spec), stderr: '' })
      .on(`cat ${SCOPE_DROPIN}`, { exitCode: 0, stdout: scopeDropIn(spec.nfs.serverScope), stderr: '' });
    const asked: string[] = [];
    await new NfsServer(ctx, journal('wal', asked)).start();
    assert.deepEqual(asked, [NFSDCLD_DB]);
    assert.ok(!exec.lines().some((l) => l.startsWith('tee ') || l === 'systemctl daemon-reload' || l.startsWith('sqlite3 ')));
  });

  it('without sqlite3, or when the header cannot be read, nfsd still starts (the database stays in its slower mode)', async () => {
    const { ctx, exec } = await resourceContext();
    exec.on(LIST_MOUNTS, mountPoints()).on(/^sqlite3 /, { exitCode: 127, stdout: '', stderr: 'spawn sqlite3 ENOENT' });
    const unreadable = async (): Promise<JournalMode> => {
      throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
    };
    await new NfsServer(ctx, unreadable).start();
    assert.ok(exec.lines().includes(`sqlite3 ${NFSDCLD_DB} PRAGMA journal_mode=WAL;`));
    assert.ok(exec.lines().includes('systemctl start nfs-server'));
  });

  it("reads a database's journal mode from its header (databases written by Node's SQLite)", async () => {
    const dir = await tempDir();
    try {
      for (const mode of ['DELETE', 'WAL'] as const) {
        const db = new DatabaseSync(join(dir, `${mode}.sqlite`));
        db.exec(`PRAGMA journal_mode=${mode}; CREATE TABLE t (id BLOB PRIMARY KEY); INSERT INTO t VALUES (x'01');`);
        db.close();
      }
      assert.equal(await sqliteJournalMode(join(dir, 'DELETE.sqlite')), 'rollback');
      assert.equal(await sqliteJournalMode(join(dir, 'WAL.sqlite')), 'wal');
      assert.equal(await sqliteJournalMode(join(dir, 'absent.sqlite')), 'absent');
      await writeFile(join(dir, 'empty.sqlite'), '');
      assert.equal(await sqliteJournalMode(join(dir, 'empty.sqlite')), 'rollback');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('prepare writes the settings and the drop-in ahead, reloading systemd, and loads what holds no state; it starts no nfsd and binds nothing — exact argv', async () => {
    const { ctx, exec, spec } = await resourceContext();
    exec.on(/^cat /, { exitCode: 1, stdout: '', stderr: 'cat: No such file or directory' });
    await new NfsServer(ctx).prepare();
    assert.deepEqual(exec.lines(), [...CONFIGURE_NFSD, ...PREPARE_KERNEL]);
    const again = await resourceContext();
    again.exec
      .on(`cat ${NFS_CONF}`, { exitCode: 0, stdout: nfsConf(spec), stderr: '' })
      .on(`cat ${SCOPE_DROPIN}`, { exitCode: 0, stdout: scopeDropIn(spec.nfs.serverScope), stderr: '' });
    await new NfsServer(again.ctx).prepare();
    assert.deepEqual(again.exec.lines(), [`cat ${NFS_CONF}`, `cat ${SCOPE_DROPIN}`, ...PREPARE_KERNEL], 'in place already: read, not rewritten');
  });

  it('prepare: a masked rpcbind (an NFSv4-only node) is no failure; nfsd that cannot load is', async () => {
    const masked = await resourceContext();
    masked.exec.on('systemctl start rpcbind.service', { exitCode: 1, stdout: '', stderr: 'Failed to start rpcbind.service: Unit rpcbind.service is masked.' });
    await new NfsServer(masked.ctx).prepare();
    assert.equal(masked.exec.lines().at(-1), 'systemctl start rpcbind.service');
    const broken = await resourceContext();
    broken.exec.on('systemctl start proc-fs-nfsd.mount rpc_pipefs.target', {
      exitCode: 1,
      stdout: '',
      stderr: 'Job for proc-fs-nfsd.mount failed. See "systemctl status proc-fs-nfsd.mount" and "journalctl -xeu proc-fs-nfsd.mount" for details.',
    });
    await assert.rejects(new NfsServer(broken.ctx).prepare(), /loading nfsd and its filesystems/);
    assert.ok(!broken.exec.lines().includes('systemctl start rpcbind.service'));
  });

  it('stop ends what holds the bound directories open before unbinding them, in one systemctl and one umount — exact argv', async () => {
    const { ctx, exec } = await resourceContext();
    exec
      // sm-notify ran to its end and was collected: systemctl stops the others and says 5.
      .on('systemctl stop nfs-ha-sm-notify nfs-server nfsdcld rpc-statd', {
        exitCode: 5,
        stdout: '',
        stderr: 'Failed to stop nfs-ha-sm-notify.service: Unit nfs-ha-sm-notify.service not loaded.',
      })
      // v4recovery was never bound (a start that failed half-way): it is not unmounted.
      .on(LIST_MOUNTS, mountPoints(...['sm.bak', 'sm', 'nfsdcld'].map((d) => `/var/lib/nfs/${d}`)));
    await new NfsServer(ctx).stop();
    assert.deepEqual(exec.lines(), [
      'systemctl stop nfs-ha-sm-notify nfs-server nfsdcld rpc-statd',
      LIST_MOUNTS,
      `umount ${['sm.bak', 'sm', 'nfsdcld'].map((d) => `/var/lib/nfs/${d}`).join(' ')}`,
    ]);
    // A stop job that failed: systemctl exits 1, and nothing is unmounted under a running server.
    const failed = await resourceContext();
    failed.exec.on('systemctl stop nfs-ha-sm-notify nfs-server nfsdcld rpc-statd', {
      exitCode: 1,
      stdout: '',
      stderr: 'Job for nfs-server.service failed. See "systemctl status nfs-server.service" and "journalctl -xeu nfs-server.service" for details.',
    });
    await assert.rejects(new NfsServer(failed.ctx).stop(), /stopping nfs-server/);
    assert.deepEqual(failed.exec.lines(), ['systemctl stop nfs-ha-sm-notify nfs-server nfsdcld rpc-statd']);
  });

  it('monitor maps the nfsd thread count and, only without threads, systemctl is-active (real output)', async () => {
    const { ctx, exec } = await resourceContext();
    exec.on(/is-active/, 'systemctl-is-active--nfs-server--running', 'systemctl-is-active--nfs-server--stopped', {
      exitCode: 3,
      stdout: 'failed\n',
      stderr: '',
    });
    // nfsd stopped: threads 0, and v4_end_grace still readable (Y): what a lab node read.
    exec.on(READ_NFSD, NFSD_SERVING, { exitCode: 0, stdout: '0\nY\n', stderr: '' });
    const nfs = new NfsServer(ctx);
    assert.deepEqual(await nfs.monitor(), { state: 'running' });
    assert.deepEqual(exec.lines(), [READ_NFSD], 'running threads: no round trip to systemd');
    assert.deepEqual(await nfs.monitor(), { state: 'failed', reason: 'nfs-server is active but nfsd runs 0 threads' }, 'after `rpc.nfsd 0`');
    assert.deepEqual(await nfs.monitor(), { state: 'stopped' });
    assert.deepEqual(await nfs.monitor(), { state: 'failed', reason: 'nfs-server is failed' });
  });

  it('monitor says when nfsd is in its NFSv4 grace period, and still serves without v4_end_grace (real output)', async () => {
    const { ctx, exec } = await resourceContext();
    exec.on(
      READ_NFSD,
      { exitCode: 0, stdout: '8\nN\n', stderr: '' },
      {
        exitCode: 1,
        stdout: '8\n',
        stderr: 'cat: /proc/fs/nfsd/v4_end_grace: No such file or directory\n',
      },
    );
    const nfs = new NfsServer(ctx);
    assert.deepEqual(await nfs.monitor(), { state: 'running', detail: GRACE_DETAIL });
    assert.deepEqual(await nfs.monitor(), { state: 'running' }, 'a kernel without v4_end_grace: threads run, grace unknown');
    assert.deepEqual(exec.lines(), [READ_NFSD, READ_NFSD]);
  });
});

describe('exports resource', () => {
  it('parses the live export table (real output), long and short path layouts', () => {
    assert.deepEqual(parseExportfs(fixture('exportfs-v--no-exports').stdout), []);
    const two = parseExportfs(fixture('exportfs-v--two-exports').stdout);
    assert.deepEqual(
      two.map((e) => [e.path, e.client, e.options.find((o) => o.startsWith('fsid'))]),
      [
        ['/srv/ha/export2', '127.0.0.1', 'fsid=78'],
        ['/srv/ha/export1', '10.88.0.0/24', 'fsid=77'],
      ],
    );
    assert.deepEqual(parseExportfs('/srv/x    \t*(rw,fsid=5)\n'), [{ path: '/srv/x', client: '*', options: ['rw', 'fsid=5'] }]);
  });

  it('exports each (path, client) with its fixed fsid — exact argv — and verifies the table', async () => {
    const { ctx, exec } = await resourceContext();
    const table =
      '/srv/nfs/export1\n\t\t10.88.0.0/24(sync,wdelay,hide,no_subtree_check,fsid=101,sec=sys,rw)\n/srv/nfs/export2\n\t\t10.88.0.0/24(sync,wdelay,hide,no_subtree_check,fsid=102,sec=sys,rw)\n';
    exec.on('exportfs -v', 'exportfs-v--no-exports', { exitCode: 0, stdout: table, stderr: '' });
    await new Exports(ctx).start();
    assert.deepEqual(exec.lines(), [
      'exportfs -v',
      'exportfs -o rw,sync,no_subtree_check,fsid=101 10.88.0.0/24:/srv/nfs/export1',
      'exportfs -o rw,sync,no_subtree_check,fsid=102 10.88.0.0/24:/srv/nfs/export2',
      'exportfs -v',
    ]);
  });

  it('a failed export (exit 1, yet listed) is removed again and start fails', async () => {
    const { ctx, exec } = await resourceContext();
    const half = '/srv/nfs/export1\n\t\t10.88.0.0/24(sync,fsid=101,rw)\n';
    exec
      .on(/^exportfs -o .*export1/, 'exportfs-o--nonexistent-path-fails')
      .on('exportfs -v', 'exportfs-v--no-exports', { exitCode: 0, stdout: half, stderr: '' }, { exitCode: 0, stdout: half, stderr: '' });
    await assert.rejects(new Exports(ctx).start(), /could not export 10\.88\.0\.0\/24:\/srv\/nfs\/export1.*Failed to stat/);
    assert.ok(exec.lines().includes('exportfs -u 10.88.0.0/24:/srv/nfs/export1'));
  });

  it("stop unexports each entry with one command, no table read (a switchover's clients wait for it); one exportfs did not find is done", async () => {
    const { ctx, exec } = await resourceContext();
    // export1 is exported; export2 is not (exportfs's real answer, for this spec's entry).
    const notFound = fixture('exportfs-u--not-exported');
    exec.on(/^exportfs -u .*export2/, { ...notFound, stderr: notFound.stderr.replace('10.99.0.0/24:/srv/ha/export1', '10.88.0.0/24:/srv/nfs/export2') });
    await new Exports(ctx).stop();
    assert.deepEqual(exec.lines(), ['exportfs -u 10.88.0.0/24:/srv/nfs/export1', 'exportfs -u 10.88.0.0/24:/srv/nfs/export2']);
    // Not finding another entry than the one it was given, or any other failure, is a failure.
    const { ctx: ctx2, exec: exec2 } = await resourceContext();
    exec2.on(/^exportfs -u .*export1/, notFound);
    await assert.rejects(new Exports(ctx2).stop(), /unexporting 10\.88\.0\.0\/24:\/srv\/nfs\/export1.*Could not find '10\.99\.0\.0\/24/s);
  });
});

describe('floating-ip resource', () => {
  it('parses ip -j addr (real output)', () => {
    assert.deepEqual(parseIpv4Addresses(fixture('ip-j-addr--no-vip').stdout), ['10.88.0.1/24']);
    assert.deepEqual(parseIpv4Addresses(fixture('ip-j-addr--with-vip').stdout), ['10.88.0.1/24', '10.88.0.100/24']);
  });

  it('probes for a duplicate (Habets arping -0), adds the VIP, sends gratuitous ARP — exact argv', async () => {
    const { ctx, exec } = await resourceContext();
    exec
      .on(/^ip -j addr/, 'ip-j-addr--no-vip')
      .on(/^arping -0/, 'arping-0--dad--no-conflict')
      .on(/^arping -U/, 'arping-U--garp');
    await new FloatingIp(ctx).start();
    assert.deepEqual(exec.lines(), [
      'ip -j addr show dev eth0',
      'arping -0 -c 1 -w 0.3 -i eth0 10.88.0.100',
      'ip addr add 10.88.0.100/24 dev eth0',
      `arping -U -i eth0 -S 10.88.0.100 -c ${GARP_COUNT} -W 0.05 -w 1 10.88.0.100`,
    ]);
  });

  it('probes ahead, beside the steps before it (startAhead): start() waits for that probe instead of probing again', async () => {
    const { ctx, exec } = await resourceContext();
    exec.on(/^ip -j addr/, 'ip-j-addr--no-vip').on(/^arping -0/, 'arping-0--dad--no-conflict').on(/^arping -U/, 'arping-U--garp');
    const vip = new FloatingIp(ctx);
    vip.startAhead();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(exec.lines(), ['arping -0 -c 1 -w 0.3 -i eth0 10.88.0.100'], 'probing before its start');
    await vip.start();
    assert.deepEqual(exec.lines().slice(1), ['ip -j addr show dev eth0', 'ip addr add 10.88.0.100/24 dev eth0', `arping -U -i eth0 -S 10.88.0.100 -c ${GARP_COUNT} -W 0.05 -w 1 10.88.0.100`]);
    // A probe ahead that found the VIP taken fails start(), and nothing is added.
    const { ctx: ctx2, exec: exec2, spec } = await resourceContext();
    spec.timing.leaseTtlMs = 0;
    exec2.on(/^ip -j addr/, 'ip-j-addr--no-vip').on(/^arping -0/, 'arping-0--dad--conflict');
    const taken = new FloatingIp(ctx2, async () => {});
    taken.startAhead();
    await new Promise((resolve) => setTimeout(resolve, 10));
    await assert.rejects(taken.start(), /10\.88\.0\.100 is still answered by 0a:3a:dc:41:44:f7/);
    assert.equal(exec2.lines().filter((l) => l.startsWith('arping -0')).length, 1, 'probed once, ahead');
    assert.ok(!exec2.lines().some((l) => l.startsWith('ip addr add')));
  });

  it('waits while another host answers for the VIP, then proceeds once it is gone', async () => {
    const { ctx, exec } = await resourceContext();
    exec.on(/^ip -j addr/, 'ip-j-addr--no-vip').on(/^arping -0/, 'arping-0--dad--conflict', 'arping-0--dad--no-conflict');
    const slept: number[] = [];
    await new FloatingIp(ctx, async (ms) => void slept.push(ms)).start();
    assert.equal(exec.lines().filter((l) => l.startsWith('arping -0')).length, 2);
    assert.equal(slept.length, 1);
  });

  it('gives up after one lease TTL of conflict, naming the MAC that answers', async () => {
    const { ctx, exec, spec } = await resourceContext();
    spec.timing.leaseTtlMs = 0;
    exec.on(/^ip -j addr/, 'ip-j-addr--no-vip').on(/^arping -0/, 'arping-0--dad--conflict');
    await assert.rejects(new FloatingIp(ctx, async () => {}).start(), /10\.88\.0\.100 is still answered by 0a:3a:dc:41:44:f7/);
    assert.ok(!exec.lines().some((l) => l.startsWith('ip addr add')));
  });

  it("stop removes the VIP with one command (a switchover's clients wait for it), done too when the VIP was not there; monitor follows ip addr", async () => {
    const { ctx, exec } = await resourceContext();
    exec.on(/^ip addr del/, 'ip-addr-del--vip', 'ip-addr-del--not-present-fails').on(/^ip -j addr/, 'ip-j-addr--no-vip');
    const vip = new FloatingIp(ctx);
    await vip.stop();
    assert.deepEqual(exec.lines(), ['ip addr del 10.88.0.100/24 dev eth0']);
    await vip.stop();
    assert.deepEqual(exec.lines(), ['ip addr del 10.88.0.100/24 dev eth0', 'ip addr del 10.88.0.100/24 dev eth0'], 'no read, nothing more');
    assert.deepEqual(await vip.monitor(), { state: 'stopped' });
    // Any other failure is one: the interface gone, say.
    const { ctx: ctx2, exec: exec2 } = await resourceContext();
    exec2.on(/^ip addr del/, { exitCode: 1, stdout: '', stderr: 'Cannot find device "eth0"\n' });
    await assert.rejects(new FloatingIp(ctx2).stop(), /removing 10\.88\.0\.100\/24 from eth0.*Cannot find device/s);
  });
});
