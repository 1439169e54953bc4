#!/bin/bash
# Lab only: a storage node joins the SAN. Its own initiator name, one iSCSI login to the LUN
# (automatic again after a reboot), and the agent installed as a systemd unit.
# Usage: setup-node.sh INITIATOR_IQN PORTAL
set -euo pipefail
initiator=$1
portal=$2
echo "InitiatorName=$initiator" > /etc/iscsi/initiatorname.iscsi
systemctl start iscsid
iscsiadm -m discovery -t sendtargets -p "$portal" >/dev/null
iscsiadm -m node -p "$portal" --op update -n node.startup -v automatic
iscsiadm -m node -p "$portal" --login >/dev/null
systemctl enable iscsid open-iscsi 2>/dev/null
udevadm settle
for link in /dev/disk/by-id/wwn-*; do
  [[ -e $link ]] && { basename "$link"; break; }
done
