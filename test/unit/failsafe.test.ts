/** The failsafe's pure rules (shared/failsafe.ts): who may promise, for how long, and which answers are final. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { answerPromise, definiteAnswer, mayHavePromised, type PromiserView, released, restartPromise, vouching } from '../../shared/failsafe.ts';

const idle: PromiserView = {
  enabled: true,
  peer: 'node-a',
  role: 'passive',
  acting: false,
  leftovers: false,
  heartbeat: { ok: false, error: 'no answer within 800 ms' },
  memory: { seen: 3, acted: 2 },
  now: 10_000,
  promiseMs: 3_000,
  current: null,
};
const ask = { node: 'node-a', epoch: 3 };

describe('failsafe: the promise', () => {
  it('an idle passive promises for one promise window from now, whether or not it reaches the arbiter', () => {
    assert.deepEqual(answerPromise(idle, ask), { accept: true, promise: { to: 'node-a', epoch: 3, until: 13_000 } });
    const reachable = { ...idle, heartbeat: { ok: true as const, renewed: false, directive: { action: 'stay-passive' as const, epoch: 3, holder: null, reason: 'lapsed' } } };
    assert.equal(answerPromise(reachable, ask).accept, true);
  });

  it('a promise never ends earlier than one already given', () => {
    const r = answerPromise({ ...idle, now: 9_000, current: { to: 'node-a', epoch: 3, until: 14_000 } }, ask);
    assert.ok(r.accept && r.promise.until === 14_000);
  });

  it('refuses when it could take over, or the request is not current', () => {
    const refusals: [Partial<PromiserView>, typeof ask, RegExp][] = [
      [{ enabled: false }, ask, /failsafe is off/],
      [{}, { node: 'node-c', epoch: 3 }, /not this node's peer/],
      [{ role: 'active' }, ask, /this node is active/],
      [{ acting: true }, ask, /action under way/],
      [{ leftovers: true }, ask, /left are still running/],
      [
        { heartbeat: { ok: true, renewed: true, directive: { action: 'activate', epoch: 4, fence: { victim: 'node-a', keys: [], confirmed: false }, reason: 'granted' } } },
        ask,
        /granted this node epoch 4/,
      ],
      [{}, { node: 'node-a', epoch: 2 }, /epoch 2 is not current: this node knows of epoch 3/],
      [{ memory: { seen: 3, acted: 3 } }, ask, /epoch 3 is not current/],
    ];
    for (const [view, req, reason] of refusals) {
      const r = answerPromise({ ...idle, ...view }, req);
      assert.ok(!r.accept, `expected a refusal for ${JSON.stringify(view)}`);
      assert.match(r.reason, reason);
    }
  });

  it('released by the holder: only a promise no later request of the same process extended', () => {
    const asked = (instance: string, seq: number) => ({ instance, seq });
    const given = (seq: number) => {
      const r = answerPromise(idle, { ...ask, asked: asked('aaaaaaaaaaaaaaaa', seq) });
      assert.ok(r.accept);
      return r.promise;
    };
    assert.deepEqual(given(4).asked, asked('aaaaaaaaaaaaaaaa', 4), 'the promise records the request that extended it');
    assert.equal(released(given(4), asked('aaaaaaaaaaaaaaaa', 4)), true, 'the holder renewed after sending request 4');
    assert.equal(released(given(4), asked('aaaaaaaaaaaaaaaa', 7)), true);
    assert.equal(released(given(5), asked('aaaaaaaaaaaaaaaa', 4)), false, 'request 5 crossed the status that released 4');
    assert.equal(released(given(4), asked('bbbbbbbbbbbbbbbb', 9)), false, 'another agent process does not release this one');
    assert.equal(released(given(4), undefined), false, 'a status that releases nothing');
    assert.equal(released(restartPromise('node-a', 500, 3_000), asked('aaaaaaaaaaaaaaaa', 9)), false, 'the restart window: whom it promised is not known');
    assert.equal(released(null, asked('aaaaaaaaaaaaaaaa', 9)), false);
    // A request extends the restart window's promise: the release covers it, with the request.
    const after = answerPromise({ ...idle, current: restartPromise('node-a', 9_000, 3_000) }, { ...ask, asked: asked('aaaaaaaaaaaaaaaa', 2) });
    assert.ok(after.accept && released(after.promise, asked('aaaaaaaaaaaaaaaa', 2)));
  });

  it('a restarted node may have promised unless it acted under the highest epoch it has seen', () => {
    assert.equal(mayHavePromised({ seen: 4, acted: 4 }), false, 'its promises ran out before it acted under 4, and it gives none for 4 or below');
    assert.equal(mayHavePromised({ seen: 5, acted: 4 }), true, 'it may have vouched for epoch 5');
    assert.equal(mayHavePromised({ seen: 0, acted: 0 }), true, 'a memory that never acted may be a lost one');
    assert.equal(mayHavePromised({ seen: 3, acted: 0 }), true);
  });

  it('what the heartbeat reports: the promise while it runs, the restart window as epoch 0', () => {
    assert.deepEqual(vouching({ to: 'node-a', epoch: 3, until: 13_000 }, 10_000), { for: 'node-a', epoch: 3, remainingMs: 3_000 });
    assert.equal(vouching({ to: 'node-a', epoch: 3, until: 13_000 }, 13_000), null);
    assert.equal(vouching(null, 0), null);
    assert.deepEqual(vouching(restartPromise('node-a', 500, 3_000), 500), { for: 'node-a', epoch: 0, remainingMs: 3_000 });
  });
});

describe('failsafe: which answers from the arbiter are final', () => {
  const ok = (d: Parameters<typeof definiteAnswer>[0] & { ok: true }) => d;
  it('only an answer about the lease: another holder or epoch, demote, release', () => {
    assert.equal(definiteAnswer({ ok: false, error: 'HTTP 401 invalid_credential' }, 2), false);
    assert.equal(definiteAnswer({ ok: false, error: 'HTTP 503' }, 2), false);
    assert.equal(definiteAnswer(ok({ ok: true, renewed: false, directive: { action: 'stay-active', epoch: 2, reason: 'not committed' } }), 2), false);
    assert.equal(definiteAnswer(ok({ ok: true, renewed: false, directive: { action: 'demote', epoch: 3, holder: 'node-a', reason: 'x' } }), 2), true);
    assert.equal(definiteAnswer(ok({ ok: true, renewed: true, directive: { action: 'release', epoch: 2, reason: 'switchover' } }), 2), true);
    assert.equal(definiteAnswer(ok({ ok: true, renewed: true, directive: { action: 'stay-active', epoch: 3, reason: 'x' } }), 2), true);
  });
});
