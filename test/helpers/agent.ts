/** Builds resources for node-a of the example spec on a scripted executor. */
import type { FencingState, ResourceContext } from '../../agent/resources/resource.ts';
import { ClusterSpecSchema } from '../../shared/spec.ts';
import { silentLog, exampleSpec } from './control-plane.ts';
import { ScriptedExecutor } from './fixtures.ts';

export async function resourceContext(node: 'node-a' | 'node-b' = 'node-a', fencing: FencingState = { epoch: 1, confirmedEpoch: 1 }) {
  const spec = ClusterSpecSchema.parse(await exampleSpec());
  const exec = new ScriptedExecutor();
  const ctx: ResourceContext = { spec, node: spec.nodes.find((n) => n.id === node)!, exec, log: silentLog, fencing };
  return { ctx, exec, spec };
}
