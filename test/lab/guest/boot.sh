#!/bin/bash
# Lab only. `boot.sh network`: the guest's identity from the kernel command line, its name and
# addresses in place before network-online.target, as a configured node has them (the agent and
# the iSCSI login start after that target). Then `boot.sh`: the lab's guest helper.
set -eu
arg() { sed -n "s/.*nfsha\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
if [[ ${1:-} == network ]]; then
  role=$(arg role)
  hostname "$role"
  echo "$role" > /etc/hostname
  # The NICs appear with udev's coldplug, which may still be running this early.
  for _ in $(seq 100); do
    [[ -e /sys/class/net/eth0 && -e /sys/class/net/eth1 ]] && break
    sleep 0.1
  done
  ip link set lo up
  ip addr replace "$(arg addr)/24" dev eth0
  ip link set eth0 up
  ip addr replace "$(arg addr2)/24" dev eth1
  ip link set eth1 up
  exit 0
fi
# The journal on disk within a second, not journald's 5 minutes: a node reset by its watchdog or
# its own self-fence keeps its agent's last words for the lab's report.
if [[ ! -f /etc/systemd/journald.conf.d/lab.conf ]]; then
  mkdir -p /etc/systemd/journald.conf.d
  printf '[Journal]\nSyncIntervalSec=1s\n' > /etc/systemd/journald.conf.d/lab.conf
  systemctl restart systemd-journald
fi
echo "nfs-ha lab: $(hostname) at $(arg addr) and $(arg addr2), starting the guest helper"
exec /usr/bin/node /lab/helper.mjs
