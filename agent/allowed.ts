/**
 * The node decides what a cluster spec may touch on it. The spec comes from the control plane,
 * so a spec that names another disk, another VG or a mount point outside the node's own prefix
 * (a typo, or a compromised control plane) is refused here, before any command runs.
 */
import { type ClusterSpec, nodeDevices, within } from '../shared/spec.ts';
import type { AgentConfig } from './config.ts';

/** What in the spec lies outside what this node allows; empty when the spec may run here. */
export function outsideAllowed(spec: ClusterSpec, nodeId: string, allowed: AgentConfig['allowed']): string[] {
  const problems: string[] = [];
  for (const d of nodeDevices(spec, nodeId))
    if (!allowed.devices.includes(d)) problems.push(`device ${d} is not one this node allows (${allowed.devices.join(', ')})`);
  if (spec.storage.volumeGroup !== allowed.volumeGroup)
    problems.push(`volume group ${spec.storage.volumeGroup} is not the one this node allows (${allowed.volumeGroup})`);
  const mount = spec.storage.filesystem.mountPoint;
  if (!within(mount, allowed.mountPrefix)) problems.push(`mount point ${mount} is outside this node's mount prefix ${allowed.mountPrefix}`);
  return problems;
}
