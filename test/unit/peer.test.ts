/** The peer channel: answers are authenticated per request, so a forged or replayed one is ignored. */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { fetchPeerStatus, type PeerKeys, type PeerStatus, PeerWatch, requestPromise, sendHandover, sendRelease, startPeerServer } from '../../agent/peer.ts';
import type { PromiseAsk, PromiseRequest } from '../../shared/failsafe.ts';

const OLD = 'old-secret-0123456789abcdef';
const NEW = 'new-secret-0123456789abcdef';
const active: PeerStatus = { node: 'node-a', role: 'active', epoch: 7, leaseRemainingMs: 2500 };
const servers: Server[] = [];
after(() => servers.forEach((s) => s.close()));

async function peer(keys: PeerKeys, status: PeerStatus = active): Promise<string> {
  const server = await startPeerServer({ host: '127.0.0.1', port: 0, keys: () => keys, status: () => status });
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/peer/v1/status`;
}

/** A stand-in that answers whatever `answer` returns, and records what it was sent. */
async function impostor(answer: (req: IncomingMessage) => unknown): Promise<{ url: string; seen: IncomingMessage[] }> {
  const seen: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    seen.push(req);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer(req)));
  });
  servers.push(server);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/peer/v1/status`, seen };
}

describe('peer channel', () => {
  it('a signed answer to this request is taken; the secret itself never crosses the network', async () => {
    assert.deepEqual(await fetchPeerStatus(await peer({ token: OLD }), { token: OLD }, 2000), active);
    const spy = await impostor(() => ({}));
    await fetchPeerStatus(spy.url, { token: OLD }, 2000).catch(() => {});
    assert.ok(!JSON.stringify([spy.seen[0]!.url, spy.seen[0]!.headers]).includes(OLD));
  });

  it('a forged answer ("active, plenty of lease") is ignored: the passive goes on seeing its peer as silent', async () => {
    const forged = await impostor(() => ({ status: JSON.stringify({ ...active, leaseRemainingMs: 1e9 }), mac: 'x'.repeat(43) }));
    await assert.rejects(fetchPeerStatus(forged.url, { token: OLD }, 2000), /not signed for this request/);
    let t = 0;
    const rejected: string[] = [];
    const watch = new PeerWatch(
      forged.url,
      () => ({ token: OLD }),
      2000,
      1000,
      () => t,
      (e) => rejected.push(e.message),
    );
    await watch.check();
    t = 10;
    assert.equal(watch.reachable(), false);
    assert.equal(watch.status(), null);
    assert.equal(rejected.length, 1, 'and it is said');
  });

  it("keeps the clients its peer served as the active through its silence and its release, until its next term as the active", async () => {
    let status: PeerStatus = { ...active, clients: ['10.88.0.21:812', '10.88.0.22:700'] };
    let keys: PeerKeys = { token: OLD };
    const server = await startPeerServer({ host: '127.0.0.1', port: 0, keys: () => keys, status: () => status });
    servers.push(server);
    const watch = new PeerWatch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/peer/v1/status`, () => ({ token: OLD }), 2000, 1000, () => 0);
    await watch.check();
    assert.deepEqual(watch.clients(), ['10.88.0.21:812', '10.88.0.22:700']);
    keys = { token: NEW }; // its answers no longer count: silence, as before a takeover
    await watch.check();
    assert.deepEqual(watch.clients(), ['10.88.0.21:812', '10.88.0.22:700']);
    keys = { token: OLD };
    status = { node: 'node-a', role: 'passive', epoch: 0, leaseRemainingMs: null }; // released: a switchover's new holder tickles them
    await watch.check();
    assert.deepEqual(watch.clients(), ['10.88.0.21:812', '10.88.0.22:700']);
    status = { ...active, clients: ['10.88.0.23:900'] };
    await watch.check();
    assert.deepEqual(watch.clients(), ['10.88.0.23:900']);
    status = { ...active }; // an active serving nobody
    await watch.check();
    assert.deepEqual(watch.clients(), []);
  });

  it('an entry in the client list that is not a connection does not make the answer count as silence (the tickle drops it)', async () => {
    const url = await peer({ token: OLD }, { ...active, clients: ['10.88.0.21:812', '--preserve-root'] });
    assert.deepEqual((await fetchPeerStatus(url, { token: OLD }, 2000)).clients, ['10.88.0.21:812', '--preserve-root']);
  });

  it('a replayed answer (a genuine one, to an earlier request) is ignored', async () => {
    const genuine = await peer({ token: OLD });
    // Capture a real answer to some earlier nonce, then serve it again to every request.
    let captured: unknown = null;
    const recorder = await impostor(() => captured);
    const nonce = 'ab'.repeat(16);
    const { createHmac } = await import('node:crypto');
    const auth = `NFSHA-HMAC ${createHmac('sha256', OLD).update(['nfs-ha peer request', nonce].join('\n')).digest('base64url')}`;
    captured = await (await fetch(`${genuine}?nonce=${nonce}`, { headers: { authorization: auth } })).json();
    assert.ok((captured as { mac: string }).mac, 'the genuine peer answered the earlier request');
    await assert.rejects(fetchPeerStatus(recorder.url, { token: OLD }, 2000), /not signed for this request \(forged or replayed\)/);
  });

  it('a request without the secret gets nothing', async () => {
    const url = await peer({ token: OLD });
    assert.equal((await fetch(`${url}?nonce=${'cd'.repeat(16)}`, { headers: { authorization: 'Bearer whatever' } })).status, 401);
    await assert.rejects(fetchPeerStatus(url, { token: 'someone-elses-secret-xxxx' }, 2000), /refused our signature/);
  });

  it('rotation without downtime: either side may hold the new secret first', async () => {
    // node-a has the new secret (keeping the old as previous); node-b still has only the old one.
    const a = await peer({ token: NEW, previousToken: OLD });
    const b = await peer({ token: OLD });
    assert.deepEqual(await fetchPeerStatus(a, { token: OLD }, 2000), active, 'b asks a with the old secret');
    assert.deepEqual(await fetchPeerStatus(b, { token: NEW, previousToken: OLD }, 2000), active, 'a asks b: new refused, then the old');
    // Both updated; the old secret dropped.
    assert.deepEqual(await fetchPeerStatus(await peer({ token: NEW }), { token: NEW }, 2000), active);
  });
});

describe('peer channel: failsafe promises', () => {
  async function promiser(keys: PeerKeys, seen: PromiseRequest[], releases: [string, PromiseAsk][] = [], handovers: [string, number][] = []) {
    const server = await startPeerServer({
      host: '127.0.0.1',
      port: 0,
      keys: () => keys,
      status: () => active,
      promise: async (req) => {
        seen.push(req);
        return { accepted: true, ttlMs: 3000 };
      },
      release: (node, through) => {
        releases.push([node, through]);
        return true;
      },
      handover: (node, epoch) => {
        handovers.push([node, epoch]);
        return node === 'node-a';
      },
    });
    servers.push(server);
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/peer/v1/promise`;
  }

  it('a signed request gets a signed answer; each request is used once', async () => {
    const seen: PromiseRequest[] = [];
    const url = await promiser({ token: OLD }, seen);
    const req = { node: 'node-a', epoch: 7, instance: '0123456789abcdef', seq: 1 };
    assert.deepEqual(await requestPromise(url, { token: OLD }, 2000, req), { accepted: true, ttlMs: 3000 });
    assert.deepEqual(seen, [{ node: 'node-a', epoch: 7, asked: { instance: '0123456789abcdef', seq: 1 } }], 'the promiser learns which request it answers (a release names it)');
    // The same request again (a replay by someone on the network): refused, the passive promises nothing more.
    const again = await requestPromise(url, { token: OLD }, 2000, req);
    assert.equal(again.accepted, false);
    assert.match(again.accepted ? '' : again.reason, /replayed/);
    assert.equal(seen.length, 1);
    assert.equal((await requestPromise(url, { token: OLD }, 2000, { ...req, seq: 2 })).accepted, true);
    // During a rotation the previous secret still works.
    assert.equal((await requestPromise(url, { token: NEW, previousToken: OLD }, 2000, { ...req, seq: 3 })).accepted, true);
  });

  it('without the secret, nothing is promised; a forged acceptance is not taken', async () => {
    const seen: PromiseRequest[] = [];
    const url = await promiser({ token: OLD }, seen);
    await assert.rejects(requestPromise(url, { token: NEW }, 2000, { node: 'node-a', epoch: 7, instance: '0123456789abcdef', seq: 1 }), /refused our signature/);
    assert.deepEqual(seen, []);
    const forged = await impostor(() => ({ status: JSON.stringify({ accepted: true, ttlMs: 3000 }), mac: 'x'.repeat(43) }));
    await assert.rejects(
      requestPromise(forged.url.replace('status', 'promise'), { token: OLD }, 2000, { node: 'node-a', epoch: 7, instance: '0123456789abcdef', seq: 1 }),
      /not signed for this request/,
    );
  });

  it('PeerWatch numbers its requests, so the active asks again and again', async () => {
    const seen: PromiseRequest[] = [];
    const url = await promiser({ token: OLD }, seen);
    const watch = new PeerWatch(url.replace('promise', 'status'), () => ({ token: OLD }), 2000, 1000, () => 0);
    for (let i = 0; i < 3; i++) assert.deepEqual(await watch.promise('node-a', 7, 2000), { accepted: true, ttlMs: 3000 });
    assert.equal(seen.length, 3);
  });

  it('a release is signed, used once, and numbered with the promises of the same process', async () => {
    const seen: PromiseRequest[] = [];
    const releases: [string, PromiseAsk][] = [];
    const url = await promiser({ token: OLD }, seen, releases);
    const watch = new PeerWatch(url.replace('promise', 'status'), () => ({ token: OLD }), 2000, 1000, () => 0);
    await watch.promise('node-a', 7, 2000);
    await watch.promise('node-a', 7, 2000);
    const through = watch.asked();
    assert.equal(await watch.release('node-a', through, 2000), true);
    assert.deepEqual(releases, [['node-a', through]], 'the promiser hears which requests are released');
    assert.equal(watch.asked().seq, through.seq + 1, 'the release took a sequence number of its own');
    const release = { node: 'node-a', instance: through.instance, seq: through.seq + 1, through: through.seq };
    const releaseUrl = url.replace('promise', 'release');
    assert.equal(await sendRelease(releaseUrl, { token: OLD }, 2000, release), false, 'a replay ends nothing');
    await assert.rejects(sendRelease(releaseUrl, { token: NEW }, 2000, { ...release, seq: 99 }), /refused our signature/);
    assert.equal(releases.length, 1);
  });

  it('a handover is signed, used once, and says whether the peer asks the arbiter now', async () => {
    const handovers: [string, number][] = [];
    const url = await promiser({ token: OLD }, [], [], handovers);
    const watch = new PeerWatch(url.replace('promise', 'status'), () => ({ token: OLD }), 2000, 1000, () => 0);
    await watch.promise('node-a', 7, 2000);
    assert.equal(await watch.handover('node-a', 7, 2000), true);
    assert.equal(await watch.handover('node-c', 7, 2000), false, 'the receiver decides (here: only for node-a)');
    assert.deepEqual(handovers, [['node-a', 7], ['node-c', 7]]);
    assert.equal(watch.asked().seq, 3, 'numbered with the promises of the same process');
    const handoverUrl = url.replace('promise', 'handover');
    const replay = { node: 'node-a', epoch: 7, instance: watch.asked().instance, seq: 2 };
    assert.equal(await sendHandover(handoverUrl, { token: OLD }, 2000, replay), false, 'a replay wakes nobody');
    await assert.rejects(sendHandover(handoverUrl, { token: NEW }, 2000, { ...replay, seq: 99 }), /refused our signature/);
    assert.equal(handovers.length, 2);
    const unsigned = await fetch(`${handoverUrl}?nonce=${'0'.repeat(32)}`, { method: 'POST', body: JSON.stringify({ ...replay, seq: 100 }) });
    assert.equal(unsigned.status, 401);
    assert.equal(handovers.length, 2);
  });
});
