/** The pieces that decide whose request it is and when to refuse it. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AddressSet, clientAddress, FailureLimiter, TokenBucket } from '../../control-plane/limits.ts';

describe('limits', () => {
  it('the client behind a trusted proxy is the last untrusted X-Forwarded-For hop; anyone else’s header is ignored', () => {
    const proxies = new AddressSet(['127.0.0.1', '10.0.0.0/8']);
    assert.equal(clientAddress('127.0.0.1', '203.0.113.9', proxies), '203.0.113.9');
    assert.equal(clientAddress('::ffff:10.1.1.1', '198.51.100.1, 203.0.113.9, 10.2.2.2', proxies), '203.0.113.9', 'spoofed first hop ignored');
    assert.equal(clientAddress('203.0.113.50', '127.0.0.1', proxies), '203.0.113.50', 'not from a proxy: the header means nothing');
    assert.equal(clientAddress('127.0.0.1', undefined, proxies), '127.0.0.1');
    assert.equal(new AddressSet(['fd00::/8']).has('fd12::1'), true);
    assert.throws(() => new AddressSet(['300.1.1.1']), /not an IP address or CIDR block/);
  });

  it('failures lock an address out only past the limit, for the window', () => {
    const limiter = new FailureLimiter(3, 60_000);
    const locked: number[] = [];
    const fails = [1, 2, 3, 4, 5].map((i) => limiter.fail('a', i, (n) => locked.push(n)));
    assert.deepEqual(fails, [false, false, false, true, true]);
    assert.deepEqual(locked, [4], 'told once');
    assert.equal(limiter.locked('a', 10), true);
    assert.equal(limiter.locked('a', 70_000), false);
    assert.equal(limiter.locked('b', 10), false);
  });

  it('a token bucket refills at its rate up to its burst', () => {
    const b = new TokenBucket(2, 3, 0);
    assert.deepEqual([b.take(0), b.take(0), b.take(0), b.take(0)], [true, true, true, false]);
    assert.equal(b.take(500), true);
    assert.equal(b.take(500), false);
  });
});
