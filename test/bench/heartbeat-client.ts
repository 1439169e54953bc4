/**
 * The agents' side of the heartbeat bench, in a process of its own: agents run on other
 * machines, so their HTTP client must not share the control plane's thread. On a two-core
 * machine every cycle this load generator burns is taken from the control plane it measures,
 * so it speaks the one exchange it needs directly on a keep-alive socket per holder: a
 * prebuilt request, and a response read only as far as its status, length and directive.
 * Driven over IPC.
 */
import { connect, type Socket } from 'node:net';
import { load } from './load.ts';

interface Job {
  base: string;
  clusters: string[];
  /** The agent credential of node-a of each cluster. */
  tokens: string[];
  seconds: number;
}

const BODY = '{"role":"active","epoch":1}';
const HEADER_END = Buffer.from('\r\n\r\n');

/** One holder's connection: sends its heartbeat, resolves when the whole answer is in and says stay-active. */
class Holder {
  readonly #socket: Socket;
  readonly #request: Buffer;
  #buffered: Buffer = Buffer.alloc(0);
  #pending: { ok: () => void; fail: (err: Error) => void } | null = null;

  constructor(base: URL, cluster: string, token: string) {
    this.#request = Buffer.from(
      `POST /v1/clusters/${cluster}/nodes/node-a/heartbeat HTTP/1.1\r\nhost: ${base.host}\r\ncontent-type: application/json\r\n` +
        `authorization: Bearer ${token}\r\ncontent-length: ${BODY.length}\r\n\r\n${BODY}`,
    );
    this.#socket = connect({ host: base.hostname, port: Number(base.port), noDelay: true });
    this.#socket.on('data', (chunk) => this.#read(chunk));
    this.#socket.on('error', (err) => this.#pending?.fail(err));
  }

  heartbeat(): Promise<void> {
    return new Promise((ok, fail) => {
      this.#pending = { ok, fail };
      this.#socket.write(this.#request);
    });
  }

  #read(chunk: Buffer): void {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    const headerEnd = this.#buffered.indexOf(HEADER_END);
    if (headerEnd < 0) return;
    const head = this.#buffered.subarray(0, headerEnd).toString('latin1');
    const pending = this.#pending!;
    const length = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
    if (length === undefined) return pending.fail(new Error(`an answer without a content-length: ${head}`));
    const end = headerEnd + HEADER_END.length + Number(length);
    if (this.#buffered.length < end) return;
    const body = this.#buffered.subarray(headerEnd + HEADER_END.length, end).toString();
    this.#buffered = this.#buffered.subarray(end);
    this.#pending = null;
    if (!head.startsWith('HTTP/1.1 200 ') || !body.includes('"action":"stay-active"'))
      pending.fail(new Error(`unexpected answer ${head.split('\r\n')[0]} ${body}`));
    else pending.ok();
  }
}

let holders: Holder[] = [];
process.on('message', async (job: Job) => {
  if (holders.length === 0) holders = job.clusters.map((cluster, w) => new Holder(new URL(job.base), cluster, job.tokens[w]!));
  process.send!(await load(job.seconds, holders.length, (w) => holders[w]!.heartbeat()));
});
