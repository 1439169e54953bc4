#!/bin/bash
# Lab only: the guest's identity from the kernel command line, then the lab's guest helper.
set -eu
arg() { sed -n "s/.*nfsha\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
role=$(arg role)
addr=$(arg addr)
addr2=$(arg addr2)
hostname "$role"
echo "$role" > /etc/hostname
ip link set lo up
ip addr replace "$addr/24" dev eth0
ip link set eth0 up
ip addr replace "$addr2/24" dev eth1
ip link set eth1 up
# The journal on disk within a second, not journald's 5 minutes: a node reset by its watchdog or
# its own self-fence keeps its agent's last words for the lab's report.
if [[ ! -f /etc/systemd/journald.conf.d/lab.conf ]]; then
  mkdir -p /etc/systemd/journald.conf.d
  printf '[Journal]\nSyncIntervalSec=1s\n' > /etc/systemd/journald.conf.d/lab.conf
  systemctl restart systemd-journald
fi
echo "nfs-ha lab: $role at $addr and $addr2, starting the guest helper"
exec /usr/bin/node /lab/helper.mjs
