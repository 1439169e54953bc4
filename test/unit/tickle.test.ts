/** Tickle ACKs: the active's client connections read from /proc/net/tcp, and the new active's tickles. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import type { Command, Executor } from '../../agent/executor.ts';
import { ClientConnection, MAX_CLIENT_CONNECTIONS, parseClientConnections, ProcClientTickler, TICKLE_SCRIPT } from '../../agent/tickle.ts';
import { fixture, ScriptedExecutor } from '../helpers/fixtures.ts';

/** Real /proc/net/tcp: a listener on 2049, two clients of 127.0.0.9:2049 (both ends listed), another listener. */
const PROC = fixture('cat--proc-net-tcp--two-nfs-clients').stdout;

describe('tickle ACKs', () => {
  it("reads the clients of VIP:2049 from /proc/net/tcp: established, the server's end only (real output)", () => {
    assert.deepEqual(parseClientConnections(PROC, '127.0.0.9'), ['127.0.0.5:40763', '127.0.0.1:44021']);
    assert.deepEqual(parseClientConnections(PROC, '127.0.0.9', 2024), [], 'another port: nobody connected');
    assert.deepEqual(parseClientConnections(PROC, '10.88.0.100'), [], 'another address: not our VIP');
    assert.deepEqual(parseClientConnections(PROC.split('\n')[0]!, '127.0.0.9'), [], 'no sockets at all');
  });

  it('reports at most MAX_CLIENT_CONNECTIONS, each once', () => {
    const [header, , , client] = PROC.split('\n');
    const rows = Array.from({ length: MAX_CLIENT_CONNECTIONS + 10 }, (_, i) => client!.replace(/0500007F:9F3B/, `0500007F:${(1000 + i).toString(16).toUpperCase().padStart(4, '0')}`));
    const found = parseClientConnections([header, client, client, ...rows].join('\n'), '127.0.0.9');
    assert.equal(found.length, MAX_CLIENT_CONNECTIONS);
    assert.equal(found[0], '127.0.0.5:40763');
    assert.equal(new Set(found).size, found.length);
  });

  it('a connection is an IPv4 address and a port, nothing that could smuggle an argument', () => {
    for (const ok of ['10.0.0.1:1', '255.255.255.255:65535']) assert.ok(ClientConnection.safeParse(ok).success, ok);
    for (const bad of ['10.0.0.1:0', '10.0.0.1:65536', '256.0.0.1:80', '10.0.0.1', '-c:1', '10.0.0.1:80 --x', '::1:2049'])
      assert.ok(!ClientConnection.safeParse(bad).success, bad);
  });

  it('tickles from the VIP with one perl process, the connections as arguments, started ahead and told to go once the VIP is up; drops what is not a connection', async () => {
    const exec = new ScriptedExecutor();
    const commands: Command[] = [];
    const recording: Executor = { run: (c) => (commands.push(c), exec.run(c)) };
    const tickler = new ProcClientTickler(recording, '10.88.0.100', async () => PROC);
    const said = await tickler.tickle(['10.88.0.21:812', '10.88.0.22:44021; reboot', '10.88.0.23:0', '10.88.0.24:900'], Promise.resolve());
    assert.deepEqual(exec.calls, [['perl', '-e', TICKLE_SCRIPT, '10.88.0.100', '2049', '10.88.0.21:812', '10.88.0.24:900']]);
    assert.equal(commands[0]?.input, 'go\n', 'the word to send, held back until the VIP is up');
    assert.ok(commands[0]?.inputWhen);
    assert.match(said, /^tickle ACKs sent to 2 client connection\(s\) in \d+ ms from the VIP: 10\.88\.0\.21:812, 10\.88\.0\.24:900$/);
    assert.equal(await tickler.tickle(['nonsense'], Promise.resolve()), 'no client connection known: nothing to tickle');
    assert.equal(exec.calls.length, 1, 'nothing to send, no process');
    const failed = Promise.reject(new Error('volume-group failed'));
    assert.equal(await tickler.tickle(['10.88.0.21:812'], failed), 'the takeover did not complete: no tickle ACKs sent to 1 client connection(s)');
  });

  it('says why when the tickles could not go out (perl missing)', async () => {
    const exec = new ScriptedExecutor().on(/^perl /, { exitCode: 127, stdout: '', stderr: 'spawn perl ENOENT' });
    await assert.rejects(
      new ProcClientTickler(exec, '10.88.0.100').tickle(['10.88.0.21:812'], Promise.resolve()),
      /tickle ACKs not sent: perl cannot run: perl is not installed \(Debian package perl-base\)/,
    );
  });

  it('the script sends well-formed ACKs: a port with no connection answers each with a RST (a network namespace of its own)', () => {
    // On loopback the kernel that gets the ACKs checks their checksums, then resets each port it
    // has no connection for. (A client that has the connection answers with its real sequence
    // numbers instead, and the new active's kernel, which has none, sends that RST.)
    const tcpCounters = (input: string) => {
      const out = execFileSync(
        'unshare',
        ['--user', '--map-root-user', '--net', 'sh', '-c', 'ip link set lo up && perl -e "$0" 127.0.0.1 2049 127.0.0.1:40000 127.0.0.1:812 && sleep 0.2 && cat /proc/net/snmp', TICKLE_SCRIPT],
        { encoding: 'utf8', timeout: 10_000, input },
      );
      const [names = '', values = ''] = out.split('\n').filter((l) => l.startsWith('Tcp:'));
      return Object.fromEntries(names.split(/\s+/).slice(1).map((n, i) => [n, Number(values.split(/\s+/)[i + 1])]));
    };
    assert.equal(tcpCounters('').OutRsts, 0, 'its input closed without the word (the takeover failed): nothing sent');
    const tcp = tcpCounters('go\n');
    assert.equal(tcp.InCsumErrors, 0, 'every checksum right');
    assert.equal(tcp.InSegs, 8, 'two ACKs to each connection and, on loopback, the four RSTs too');
    assert.equal(tcp.OutRsts, 4, 'each answered with a RST');
  });

  it('the active reads its own clients from /proc/net/tcp', async () => {
    assert.deepEqual(await new ProcClientTickler(new ScriptedExecutor(), '127.0.0.9', async () => PROC).read(), ['127.0.0.5:40763', '127.0.0.1:44021']);
  });
});
