/**
 * Tickle ACKs, as CTDB sends them. After the VIP moves, a client whose TCP connection went to the
 * old server finds out it is dead only when it next transmits: after a long outage its
 * retransmission backoff has reached seconds, and it waits them out with the VIP already up
 * here. So the new active sends each client connection it knows of an ACK with a bogus sequence
 * number, from VIP:2049. The client answers with an ACK carrying its real sequence numbers; this
 * node's kernel knows no such connection and answers that with a RST the client accepts, and
 * the client's RPC layer reconnects at once.
 *
 * The active reads its clients' connections (established TCP to VIP:2049, /proc/net/tcp: no
 * process to start) on each monitor pass and tells its peer over the peer channel; the passive
 * keeps the last list it heard, through the silence that precedes a takeover.
 *
 * Safe by construction: sent only once this node holds the lease and has the VIP, and only ACKs.
 * A connection this node does have (a client already back) takes the ACK as out of window and
 * answers with a duplicate ACK, which changes nothing; a connection that no longer exists draws a
 * RST from the client, to a port with no such connection here. Node cannot send raw TCP, so a
 * constant Perl script does (the addresses reach it as arguments, validated first).
 *
 * Made ready as the takeover begins, sent as soon as the VIP is up: the process starts and loads
 * its modules beside the storage steps, then waits on its standard input for the word to go on
 * (the input closed instead: the takeover failed, nothing is sent). In the lab's captures (TCG, a
 * busy one-CPU guest), started once the VIP was up its ACKs left 0.7–1.1 s after the VIP; made
 * ready, 0.14–0.18 s after the last gratuitous ARP.
 */
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { z } from 'zod';
import { type Executor, failureText } from './executor.ts';

/**
 * The tickle process's limit, from its start with the takeover: it waits through the takeover (its
 * steps have limits of their own, of up to a minute for a service) and then sends at once.
 */
const TICKLE_TIMEOUT_MS = 180_000;
/** The NFS server's port: the connections that matter after a failover. */
export const NFS_PORT = 2049;
/**
 * The most connections an active reports and a new active tickles (a pair serves tens of
 * clients). A status with this many still fits the 4,096 characters a peer accepts — agents of
 * the previous release included, which would take a longer answer for silence.
 */
export const MAX_CLIENT_CONNECTIONS = 128;

/** A client's end of a TCP connection to the VIP, "address:port". */
export const ClientConnection = z
  .string()
  .regex(/^(\d{1,3}\.){3}\d{1,3}:\d{1,5}$/, 'expected IPv4-address:port')
  .refine((c) => {
    const [host = '', port = ''] = c.split(':');
    return z.ipv4().safeParse(host).success && Number(port) >= 1 && Number(port) <= 65535;
  }, 'not an IPv4 address and a TCP port');
export type ClientConnection = z.infer<typeof ClientConnection>;

/** /proc/net/tcp's state code of an established connection (include/net/tcp_states.h). */
const ESTABLISHED = '01';

/** An address as /proc/net/tcp prints it: the 32-bit value in network order, as the host reads it, in hex. */
function procAddress(hex: string): string {
  const bytes = (hex.match(/../g) ?? []).map((b) => Number.parseInt(b, 16));
  return (endianness() === 'LE' ? bytes.reverse() : bytes).join('.');
}

/** The clients connected to `vip`:`port`, from the text of /proc/net/tcp (established connections only). */
export function parseClientConnections(procNetTcp: string, vip: string, port: number = NFS_PORT): ClientConnection[] {
  const found = new Set<string>();
  for (const line of procNetTcp.split('\n').slice(1)) {
    const [, local, remote, state] = line.trim().split(/\s+/);
    if (!local || !remote || state !== ESTABLISHED) continue;
    const [localIp = '', localPort = ''] = local.split(':');
    const [remoteIp = '', remotePort = ''] = remote.split(':');
    if (Number.parseInt(localPort, 16) !== port || procAddress(localIp) !== vip) continue;
    const connection = `${procAddress(remoteIp)}:${Number.parseInt(remotePort, 16)}`;
    if (ClientConnection.safeParse(connection).success) found.add(connection);
  }
  return [...found].slice(0, MAX_CLIENT_CONNECTIONS);
}

/** What the tickle process waits for on its standard input before it sends. */
const TICKLE_GO = 'go\n';

/**
 * Once its standard input says "go" (TICKLE_GO), sends each connection (arguments 3…,
 * "address:port") a TCP ACK with sequence and acknowledgement 0 from argument 1 (the VIP, which
 * the raw socket binds to as its source) and port argument 2. Twice back to back, in case one is
 * lost: the client rate-limits its answers, so a second never draws another. Perl because
 * perl-base is Essential on Debian: no package to add. (Not for speed: started after the VIP, its
 * ACKs left no sooner than Python's; the busy guest is the delay, which starting ahead avoids.)
 */
export const TICKLE_SCRIPT = `use strict; use warnings; use Socket qw(:DEFAULT IPPROTO_TCP);
my ($vip, $port, @connections) = @ARGV;
my $go = <STDIN>;
exit 0 unless defined $go && $go eq "go\\n";
socket(my $raw, PF_INET, SOCK_RAW, IPPROTO_TCP) or die "raw socket: $!\\n";
bind($raw, pack_sockaddr_in(0, inet_aton($vip))) or die "bind to $vip: $!\\n";
for my $connection (@connections) {
  my ($host, $client_port) = $connection =~ /^(.+):(\\d+)$/ or die "not address:port: $connection\\n";
  my $header = pack('nnNNCCnnn', $port, $client_port, 0, 0, 5 << 4, 0x10, 1024, 0, 0);
  my $sum = 0;
  $sum += $_ for unpack('n*', inet_aton($vip) . inet_aton($host) . pack('CCn', 0, IPPROTO_TCP, length $header) . $header);
  $sum = ($sum & 0xffff) + ($sum >> 16) while $sum >> 16;
  substr($header, 16, 2) = pack('n', ~$sum & 0xffff);
  for (1 .. 2) { defined send($raw, $header, 0, pack_sockaddr_in(0, inet_aton($host))) or die "send to $host: $!\\n" }
}
`;

export interface ClientTickler {
  /** The clients connected to the VIP on this node now. */
  read(): Promise<ClientConnection[]>;
  /**
   * Makes the tickles of `connections` ready now and sends them from the VIP once `vipUp`
   * resolves (nothing if it rejects); resolves with a line for the log.
   */
  tickle(connections: readonly string[], vipUp: Promise<void>): Promise<string>;
}

/** Reads connections from /proc/net/tcp and tickles them with perl, through the executor. */
export class ProcClientTickler implements ClientTickler {
  constructor(
    private readonly exec: Executor,
    private readonly vip: string,
    private readonly readProc: () => Promise<string> = () => readFile('/proc/net/tcp', 'utf8'),
  ) {}

  async read(): Promise<ClientConnection[]> {
    return parseClientConnections(await this.readProc(), this.vip);
  }

  async tickle(connections: readonly string[], vipUp: Promise<void>): Promise<string> {
    const valid = connections.filter((c) => ClientConnection.safeParse(c).success).slice(0, MAX_CLIENT_CONNECTIONS);
    if (valid.length === 0) return 'no client connection known: nothing to tickle';
    let upAt: number | null = null;
    const up = vipUp.then(() => void (upAt = performance.now()));
    up.catch(() => {}); // the executor closes the input unwritten
    const r = await this.exec.run({
      argv: ['perl', '-e', TICKLE_SCRIPT, this.vip, String(NFS_PORT), ...valid],
      timeoutMs: TICKLE_TIMEOUT_MS,
      input: TICKLE_GO,
      inputWhen: up,
    });
    if (upAt === null) return `the takeover did not complete: no tickle ACKs sent to ${valid.length} client connection(s)`;
    if (r.exitCode !== 0) throw new Error(`tickle ACKs not sent: perl ${failureText(r)}`);
    return `tickle ACKs sent to ${valid.length} client connection(s) in ${Math.round(performance.now() - upAt)} ms from the VIP: ${valid.join(', ')}`;
  }
}
