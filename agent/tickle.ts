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
 * constant Python script does (the addresses reach it as arguments, validated first).
 */
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { z } from 'zod';
import { type Executor, failureText } from './executor.ts';

/** The tickle process's limit: it runs after the takeover, and nothing waits for it. */
const TICKLE_TIMEOUT_MS = 10_000;
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

/**
 * Sends each connection (argv 3…, "address:port") a TCP ACK with sequence and acknowledgement 0
 * from argv 1 (the VIP, which the raw socket binds to as its source) and port argv 2. Twice back to
 * back, in case one is lost: the client rate-limits its answers, so a second never draws another.
 */
export const TICKLE_SCRIPT = `import socket, struct, sys
def checksum(data):
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff
vip, port = sys.argv[1], int(sys.argv[2])
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
raw.bind((vip, 0))
for connection in sys.argv[3:]:
    host, client_port = connection.rsplit(':', 1)
    header = struct.pack('!HHIIBBHHH', port, int(client_port), 0, 0, 5 << 4, 0x10, 1024, 0, 0)
    pseudo = socket.inet_aton(vip) + socket.inet_aton(host) + struct.pack('!BBH', 0, socket.IPPROTO_TCP, len(header))
    header = header[:16] + struct.pack('!H', checksum(pseudo + header)) + header[18:]
    for _ in range(2):
        raw.sendto(header, (host, 0))
`;

export interface ClientTickler {
  /** The clients connected to the VIP on this node now. */
  read(): Promise<ClientConnection[]>;
  /** Tickles `connections` from the VIP (which this node must hold); resolves with a line for the log. */
  tickle(connections: readonly string[]): Promise<string>;
}

/** Reads connections from /proc/net/tcp and tickles them with python3, through the executor. */
export class ProcClientTickler implements ClientTickler {
  constructor(
    private readonly exec: Executor,
    private readonly vip: string,
    private readonly readProc: () => Promise<string> = () => readFile('/proc/net/tcp', 'utf8'),
  ) {}

  async read(): Promise<ClientConnection[]> {
    return parseClientConnections(await this.readProc(), this.vip);
  }

  async tickle(connections: readonly string[]): Promise<string> {
    const valid = connections.filter((c) => ClientConnection.safeParse(c).success).slice(0, MAX_CLIENT_CONNECTIONS);
    if (valid.length === 0) return 'no client connection known: nothing to tickle';
    const started = performance.now();
    // Python starts in tens of milliseconds on hardware, but took 1.3–2.1 s in the lab's TCG guests (a 2 s timeout killed one).
    const r = await this.exec.run({ argv: ['python3', '-c', TICKLE_SCRIPT, this.vip, String(NFS_PORT), ...valid], timeoutMs: TICKLE_TIMEOUT_MS });
    const ms = Math.round(performance.now() - started);
    if (r.exitCode !== 0) throw new Error(`tickle ACKs not sent: python3 ${failureText(r)}`);
    return `tickle ACKs sent to ${valid.length} client connection(s) in ${ms} ms: ${valid.join(', ')}`;
  }
}
