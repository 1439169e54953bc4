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
echo "nfs-ha lab: $role at $addr and $addr2, starting the guest helper"
exec /usr/bin/node /lab/helper.mjs
