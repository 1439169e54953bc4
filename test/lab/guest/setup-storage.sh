#!/bin/bash
# Lab only: the storage side. The VM's second disk becomes one LUN served by LIO over iSCSI
# through two target ports, one per network (tpg1 on PORTAL_A, tpg2 on PORTAL_B), as a SAN's
# two controllers or fabrics would: each node reaches the LUN through two I_T nexuses of its own,
# and SCSI-3 persistent reservations work between the nodes and across the paths.
# Usage: setup-storage.sh TARGET_IQN PORTAL_A PORTAL_B INITIATOR_IQN...
set -euo pipefail
target=$1
portals=("$2" "$3")
shift 3
mkdir -p /etc/rtslib-fb-target/pr /var/target/pr
{
  echo "/backstores/block create name=lun0 dev=/dev/vdb"
  echo "/iscsi create $target"
  echo "/iscsi/$target create 2"
  for tpg in 1 2; do
    # One portal per target port, on its own network (tpg1 starts with 0.0.0.0, every address).
    [[ $tpg == 1 ]] && echo "/iscsi/$target/tpg1/portals delete 0.0.0.0 3260"
    echo "/iscsi/$target/tpg$tpg/portals create ${portals[tpg - 1]} 3260"
    echo "/iscsi/$target/tpg$tpg/luns create /backstores/block/lun0"
    for initiator in "$@"; do echo "/iscsi/$target/tpg$tpg/acls create $initiator"; done
    echo "/iscsi/$target/tpg$tpg set attribute authentication=0"
    echo "/iscsi/$target/tpg$tpg enable"
  done
} | targetcli
targetcli ls /iscsi
