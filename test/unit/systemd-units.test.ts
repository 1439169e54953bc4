/** The systemd units, as they will run on a node and on a control-plane VM. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { AGENT_NODE_FLAGS, packagedUnit } from '../../infra/package.ts';

function unit(name: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  for (const line of readFileSync(new URL(`../../infra/systemd/${name}`, import.meta.url), 'utf8').split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) settings.set(m[1]!, [...(settings.get(m[1]!) ?? []), m[2]!]);
  }
  return settings;
}

describe('systemd units', () => {
  it('the control plane keeps its state its own: a 0700 state directory, files 0600, loopback behind the proxy', () => {
    const cp = unit('nfs-ha-control-plane.service');
    assert.deepEqual(cp.get('StateDirectoryMode'), ['0700']);
    assert.deepEqual(cp.get('UMask'), ['0077']);
    assert.match(cp.get('Environment')!.join(' '), /HOST=127\.0\.0\.1/);
    assert.equal(cp.get('User')?.[0], 'nfs-ha');
    // The packaged runtime and bundle, never the system's node (Debian 12's is 18) or a source tree.
    assert.equal(cp.get('ExecStart')![0]!, '/usr/lib/nfs-ha-control-plane/bin/node --enable-source-maps /usr/lib/nfs-ha-control-plane/server.mjs');
  });

  it('the agent reloads its credential and peer secrets without a restart (a restart of the active fails over)', () => {
    const agent = unit('nfs-ha-agent.service');
    assert.deepEqual(agent.get('ExecReload'), ['/bin/kill -HUP $MAINPID']);
  });

  it('the agent runs without a JIT, so its unit can deny memory both writable and executable', async () => {
    const agent = unit('nfs-ha-agent.service');
    assert.deepEqual(agent.get('MemoryDenyWriteExecute'), ['yes']);
    // The bundle under the node's own node, with the flag on its command line…
    assert.match(agent.get('ExecStart')![0]!, /^\/usr\/bin\/node --jitless \S+nfs-ha-agent\.mjs run /);
    // …and the packaged executable, which has it built in, in the same unit.
    assert.ok(AGENT_NODE_FLAGS.includes('--jitless'));
    assert.match((await packagedUnit()).toString(), /^ExecStart=\/usr\/sbin\/nfs-ha-agent run --config \/etc\/nfs-ha\/agent\.json$/m);
  });
});
