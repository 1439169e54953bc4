#!/usr/bin/env bash
# npm run lab: real failovers of real agents in VMs, with a writing NFS client.
# Builds (or reuses) the guest image, creates the lab's private network in a network namespace
# of its own (a bridge at 10.99.0.1 and one tap per VM), runs the scenarios from inside it, and
# tears everything down on any exit. Report: .lab/report.md and .lab/report.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
ns=nfsha-lab
cache=${NFSHA_LAB_CACHE:-/var/tmp/nfs-ha-lab}

fail() {
  echo "" >&2
  echo "!! LAB CANNOT RUN: $*" >&2
  echo "!! The lab needs root, /dev/net/tun and the Debian packages qemu-system-x86 qemu-utils mmdebstrap iproute2 nftables." >&2
  exit 1
}
[[ $(id -u) == 0 ]] || fail "it must run as root (network namespace, taps, mmdebstrap)"
for tool in qemu-system-x86_64 qemu-img mmdebstrap ip nft; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
[[ -c /dev/net/tun ]] || fail "/dev/net/tun is missing"
qemu-system-x86_64 -accel help 2>/dev/null | grep -qx tcg || fail "this qemu has no TCG accelerator"

cleanup() {
  local pids
  mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null || true)
  if ((${#pids[@]})); then kill -9 "${pids[@]}" 2>/dev/null || true; fi
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
cleanup

# NFSHA_LAB_BUILT=1: the caller has just run npm run build on this tree (.ci/run does).
if [[ ${NFSHA_LAB_BUILT:-} == 1 ]]; then
  echo "== lab: the packages built by the caller: $(cd dist && echo nfs-ha-*.deb)"
else
  echo "== lab: the bundles and packages"
  npm run --silent build >/dev/null
fi
echo "== lab: guest image"
bash test/lab/image.sh "$cache/image"

echo "== lab: network namespace $ns"
ip netns add "$ns"
ip -n "$ns" link set lo up
# Two networks, as a SAN's two fabrics: labbr0 (10.99.0.0/24: clients, the control plane, the
# VIP and the first iSCSI portal) and labbr1 (10.99.1.0/24: the second portal). Each VM has a tap
# on each; the storage serves the LUN through one target port per network, so each node has two
# paths to it under dm-multipath.
for net in 0 1; do
  ip -n "$ns" link add "labbr$net" type bridge
  ip -n "$ns" addr add "10.99.$net.1/24" dev "labbr$net"
  ip -n "$ns" link set "labbr$net" up
done
for vm in node-a node-b storage; do
  ip -n "$ns" tuntap add "tap-$vm" mode tap
  ip -n "$ns" link set "tap-$vm" master labbr0 up
  ip -n "$ns" tuntap add "tap-$vm-1" mode tap
  ip -n "$ns" link set "tap-$vm-1" master labbr1 up
done

ip netns exec "$ns" node --import tsx test/lab/run.ts --image "$cache/image" "$@"
