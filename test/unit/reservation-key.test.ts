import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReservationKey, reservationKey } from '../../shared/reservation-key.ts';

describe('reservation keys', () => {
  it('are stable: the documented derivation gives these values', () => {
    // Golden values: changing the derivation would change every deployed node's key, so a
    // change here must be deliberate (and needs a migration of registered keys).
    assert.equal(reservationKey('nfs-prod', 'node-a'), '0x007793dcc6125546');
    assert.equal(reservationKey('nfs-prod', 'node-b'), '0x007793dc4eb46bec');
  });

  it('are valid sg_persist keys and share the cluster half within a cluster', () => {
    const a = reservationKey('c1', 'node-a');
    const b = reservationKey('c1', 'node-b');
    assert.equal(ReservationKey.safeParse(a).success, true);
    assert.equal(a.slice(0, 10), b.slice(0, 10));
    assert.notEqual(a, b);
    assert.notEqual(reservationKey('c2', 'node-a').slice(0, 10), a.slice(0, 10));
  });

  it('are unique across many clusters and nodes', () => {
    const seen = new Map<string, string>();
    for (let c = 0; c < 200; c++) {
      for (let n = 0; n < 20; n++) {
        const who = `cluster-${c}/node-${n}`;
        const key = reservationKey(`cluster-${c}`, `node-${n}`);
        assert.equal(seen.get(key), undefined, `${who} collides with ${seen.get(key)}`);
        seen.set(key, who);
      }
    }
  });

  it('reject the unregister key 0 and malformed keys', () => {
    for (const k of ['0x0000000000000000', '0xA1', 'a1', '0x00000000000000a1 ', '0x00000000000000A1', '-0x1']) {
      assert.equal(ReservationKey.safeParse(k).success, false, k);
    }
  });
});
