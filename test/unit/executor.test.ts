import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CommandFailed, CommandLedger, type CommandTime, expectExit, failureText, formatArgv, HostExecutor } from '../../agent/executor.ts';
import { silentLog } from '../helpers/control-plane.ts';

const exec = new HostExecutor(silentLog);

describe('host executor (real processes)', () => {
  it('passes every argument literally: no shell ever sees them', async () => {
    const hostile = ['; rm -rf /tmp/nfs-ha-should-not-exist', '$(touch /tmp/nfs-ha-pwned)', '`id`', 'a\nb', '-o', '*', '$HOME'];
    const r = await exec.run({ argv: ['printf', '%s|', ...hostile], timeoutMs: 5000 });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, `${hostile.join('|')}|`);
  });

  it('takes a fractional timeout (what is left of a lease), as found in the lab', async () => {
    const r = await exec.run({ argv: ['sleep', '5'], timeoutMs: 150.917978 });
    assert.equal(r.timedOut, true);
    assert.equal((await exec.run({ argv: ['true'], timeoutMs: 9162.917978 })).exitCode, 0);
  });

  it('kills a command at its timeout and says so', async () => {
    const r = await exec.run({ argv: ['sleep', '5'], timeoutMs: 150 });
    assert.equal(r.timedOut, true);
    assert.equal(r.exitCode, null);
    assert.ok(r.durationMs < 2000);
    assert.throws(
      () => expectExit(r),
      (e: Error) => e instanceof CommandFailed && /timed out after \d+ ms/.test(e.message),
    );
  });

  it('captures exit code, stdout and stderr, in the C locale', async () => {
    const r = await exec.run({ argv: ['sh', '-c', 'echo out; echo err >&2; echo $LC_ALL; exit 3'], timeoutMs: 5000 });
    assert.deepEqual([r.exitCode, r.stdout, r.stderr], [3, 'out\nC\n', 'err\n']);
    assert.throws(() => expectExit(r), /exited 3: err/);
    assert.doesNotThrow(() => expectExit(r, [0, 3]));
  });

  it('reports a missing program as exit 127, and names the Debian package of a tool the agent runs', async () => {
    const r = await exec.run({ argv: ['nfs-ha-no-such-tool'], timeoutMs: 5000 });
    assert.equal(r.exitCode, 127);
    assert.match(r.stderr, /ENOENT/);
    assert.equal(failureText({ ...r, argv: ['lvm', 'systemid'] }), 'cannot run: lvm is not installed (Debian package lvm2)');
    assert.throws(() => expectExit({ ...r, argv: ['sg_persist', '--in'] }), /^CommandFailed: sg_persist --in cannot run: sg_persist is not installed \(Debian package sg3-utils\)$/);
  });

  it('feeds standard input', async () => {
    const r = await exec.run({ argv: ['cat'], timeoutMs: 5000, input: 'scope=x\n' });
    assert.equal(r.stdout, 'scope=x\n');
  });

  it('holds the input back until inputWhen settles (the process runs meanwhile); rejected, closes it unwritten', async () => {
    const later = new Promise<void>((resolve) => setTimeout(resolve, 200));
    const started = performance.now();
    const r = await exec.run({ argv: ['cat'], timeoutMs: 5000, input: 'go\n', inputWhen: later });
    assert.equal(r.stdout, 'go\n');
    assert.ok(performance.now() - started >= 190, 'it waited for the word');
    const failed = Promise.reject(new Error('takeover failed'));
    failed.catch(() => {});
    assert.equal((await exec.run({ argv: ['cat'], timeoutMs: 5000, input: 'go\n', inputWhen: failed })).stdout, '');
  });

  it('standard input is a socket: `tee FILE` writes it, `/dev/stdin` cannot be opened (found in the lab)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nfs-ha-exec-'));
    const file = join(dir, 'nfs-ha.conf');
    assert.equal((await exec.run({ argv: ['tee', file], timeoutMs: 5000, input: '[nfsd]\ngrace-time=15\n' })).exitCode, 0);
    assert.equal(await readFile(file, 'utf8'), '[nfsd]\ngrace-time=15\n');
    const refused = await exec.run({ argv: ['install', '-m', '0644', '/dev/stdin', join(dir, 'other')], timeoutMs: 5000, input: 'x' });
    assert.notEqual(refused.exitCode, 0, 'if this ever passes, the socket-pair caveat no longer holds');
    await rm(dir, { recursive: true });
  });

  it('books each command to the work that ran it, while other work runs commands at the same time', async () => {
    const ledger = new CommandLedger();
    const booked = new HostExecutor(silentLog, (r) => ledger.record(r));
    const phase: CommandTime[] = [];
    const other: CommandTime[] = [];
    const untracked = booked.run({ argv: ['sleep', '0.2'], timeoutMs: 5000 });
    await Promise.all([
      ledger.track(phase, async () => {
        await booked.run({ argv: ['sleep', '0.1'], timeoutMs: 5000 });
        await booked.run({ argv: ['printf', '%s', 'two words'], timeoutMs: 5000 });
      }),
      ledger.track(other, () => booked.run({ argv: ['sleep', '0.15'], timeoutMs: 5000 })),
    ]);
    await untracked;
    assert.deepEqual(
      phase.map((c) => c.command),
      ['sleep 0.1', "printf %s 'two words'"],
    );
    assert.deepEqual(
      other.map((c) => c.command),
      ['sleep 0.15'],
    );
    assert.ok(phase[0]!.ms >= 100 && Number.isInteger(phase[0]!.ms), `${phase[0]!.ms} ms`);
  });

  it('formats argv for display with quotes where a shell would need them', () => {
    assert.equal(formatArgv(['vgchange', '--config', 'local/extra_system_ids=["nodea"]', 'vg']), `vgchange --config 'local/extra_system_ids=["nodea"]' vg`);
  });
});
