import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import type { ClusterEvent } from '../../shared/events.ts';
import { DEFAULT_RETRY, formatSecret, retryDelayMs, signedHeaders, subscribed, webhookMessages } from '../../shared/webhooks.ts';

const at = 1_795_000_000_000;
const granted = (
  epoch: number,
  node: string,
  previousHolder: string | null,
  reason: 'cold-start' | 'switchover' | 'holder-silent' | 'released',
): ClusterEvent => ({
  id: `e${epoch}.1.lease.granted`,
  clusterId: 'c1',
  at,
  epoch,
  type: 'lease.granted',
  node,
  data: { previousHolder, reason },
});
const phase = (epoch: number, node: string, p: 'fence' | 'volume-group' | 'floating-ip', durationMs: number, t: number): ClusterEvent => ({
  id: `${node}.${p}-${t}`,
  clusterId: 'c1',
  at: at + t,
  epoch,
  type: 'phase.reported',
  node,
  data: { phase: p, direction: 'start', status: 'succeeded', durationMs },
});

describe('webhook messages', () => {
  it('a switchover is announced once, when it completes, as switchover.completed', () => {
    const grant = granted(4, 'node-b', null, 'switchover');
    assert.deepEqual(webhookMessages(grant), []);
    const vg = phase(4, 'node-b', 'volume-group', 900, 1000);
    const vip = phase(4, 'node-b', 'floating-ip', 300, 2500);
    const [done, ...more] = webhookMessages(vip, [grant, vg]);
    assert.equal(more.length, 0);
    assert.equal(done!.type, 'switchover.completed');
    assert.deepEqual(done!.data, {
      epoch: 4,
      from: null,
      to: 'node-b',
      reason: 'switchover',
      takeoverMs: 2500,
      phases: { 'volume-group': 900, 'floating-ip': 300 },
    });
  });

  it('a silent holder: lease.lost for it and failover.started for the peer; the same event always makes the same message ids', () => {
    const e = granted(7, 'node-a', 'node-b', 'holder-silent');
    const messages = webhookMessages(e);
    assert.deepEqual(
      messages.map((m) => [m.type, m.data]),
      [
        ['lease.lost', { node: 'node-b', epoch: 6, reason: 'holder-silent', newHolder: 'node-a' }],
        ['failover.started', { epoch: 7, from: 'node-b', to: 'node-a', reason: 'holder-silent' }],
      ],
    );
    assert.deepEqual(
      webhookMessages(e).map((m) => m.id),
      messages.map((m) => m.id),
    );
    assert.notEqual(messages[0]!.id, messages[1]!.id);
  });

  it('failsafe: entered and left, with who serves, who vouches, from where the arbiter is unreachable, and the outcome', () => {
    const entered: ClusterEvent = {
      id: 'e3.3.failsafe.entered.v000000000012',
      clusterId: 'c1',
      at,
      epoch: 3,
      type: 'failsafe.entered',
      node: 'node-a',
      data: { vouchedBy: 'node-b', unreachableFrom: ['node-a'] },
    };
    const left: ClusterEvent = { ...entered, id: 'e3.3.failsafe.left.v000000000013', type: 'failsafe.left', data: { vouchedBy: 'node-b', durationMs: 60_000, outcome: 'renewed' } };
    assert.deepEqual(
      [...webhookMessages(entered), ...webhookMessages(left)].map((m) => [m.type, m.data]),
      [
        ['failsafe.entered', { node: 'node-a', vouchedBy: 'node-b', unreachableFrom: ['node-a'] }],
        ['failsafe.left', { node: 'node-a', vouchedBy: 'node-b', durationMs: 60_000, outcome: 'renewed' }],
      ],
    );
  });

  it('a floating IP of another epoch or node completes nothing', () => {
    const grant = granted(4, 'node-b', 'node-a', 'released');
    assert.deepEqual(webhookMessages(phase(4, 'node-a', 'floating-ip', 1, 10), [grant]), []);
    assert.deepEqual(webhookMessages(phase(5, 'node-b', 'floating-ip', 1, 10), [grant]), []);
  });

  it('filters: a subscription gets its types, and always a test', () => {
    assert.equal(subscribed(null, 'node.down'), true);
    assert.equal(subscribed(['node.up'], 'node.down'), false);
    assert.equal(subscribed(['node.up'], 'webhook.test'), true);
  });
});

describe('signing (Standard Webhooks)', () => {
  it('the reference library verifies our signature, and rejects a changed body or id', () => {
    const secret = formatSecret(Buffer.alloc(32, 7));
    const body = '{"type":"node.down","timestamp":"2026-11-26T00:00:00.000Z","data":{}}';
    const headers = signedHeaders(secret, 'msg_1', Date.now(), body);
    assert.match(headers['webhook-signature']!, /^v1,[A-Za-z0-9+/]{43}=$/);
    assert.deepEqual(new Webhook(secret).verify(body, headers), JSON.parse(body));
    assert.throws(() => new Webhook(secret).verify(body.replace('down', 'up'), headers), /signature/);
    assert.throws(() => new Webhook(secret).verify(body, { ...headers, 'webhook-id': 'msg_2' }), /signature/);
    assert.throws(() => new Webhook(formatSecret(Buffer.alloc(32, 8))).verify(body, headers), /signature/);
  });
});

describe('retries', () => {
  it('back off exponentially with jitter in [half, full] of the step, capped, and stop after the last attempt', () => {
    const policy = { baseDelayMs: 1000, maxDelayMs: 10_000, maxAttempts: 6 };
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => retryDelayMs(n, policy, () => 0)),
      [500, 1000, 2000, 4000, 5000],
    );
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => retryDelayMs(n, policy, () => 1)),
      [1000, 2000, 4000, 8000, 10_000],
    );
    assert.equal(retryDelayMs(6, policy), null);
    const spread = new Set(Array.from({ length: 50 }, () => retryDelayMs(3, policy)));
    assert.ok(spread.size > 10, 'jitter spreads retries');
  });

  it('the default policy keeps trying for hours, at most an hour apart', () => {
    let total = 0;
    for (let n = 1; n < DEFAULT_RETRY.maxAttempts; n++) total += retryDelayMs(n, DEFAULT_RETRY, () => 1)!;
    assert.ok(total > 4 * 3_600_000 && total < 12 * 3_600_000, `${total / 3_600_000} h`);
    assert.equal(
      retryDelayMs(DEFAULT_RETRY.maxAttempts - 1, DEFAULT_RETRY, () => 1),
      3_600_000,
    );
  });
});
