/** The release both programs report (`--version`); the bundles inline it at build time. */
import pkg from '../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;

/** A Debian package's file name, as `npm run build` makes it (amd64: the pinned runtime's). */
export const debFileName = (name = 'nfs-ha-agent', version = VERSION): string => `${name}_${version}_amd64.deb`;

/** Orders two releases by major, minor and patch (a pre-release suffix is not compared). */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) => v.split(/[-+]/)[0]!.split('.').map(Number);
  const [pa, pb] = [parts(a), parts(b)];
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

/**
 * What an operator must know of the versions in a cluster, in one sentence (null: nothing):
 * nodes on different releases (a rolling upgrade not finished), or an agent newer than its
 * control plane (which must be upgraded first).
 */
export function versionWarning(controlPlane: string, agents: { node: string; version: string | null }[]): string | null {
  const known = agents.filter((a): a is { node: string; version: string } => a.version !== null);
  const listed = `${known.map((a) => `${a.node} ${a.version}`).join(', ')}, control plane ${controlPlane}`;
  if (known.some((a) => compareVersions(a.version, controlPlane) > 0))
    return `AGENT NEWER THAN THE CONTROL PLANE (${listed}): upgrade the control plane first (README, "Versions and rolling upgrades")`;
  if (new Set(known.map((a) => a.version)).size > 1) return `mixed versions (${listed}): a rolling upgrade not finished`;
  return null;
}
