#!/bin/bash
# Lab only: the storage side. The VM's second disk becomes one LUN served by LIO over iSCSI,
# with an ACL for each node's initiator, so each node reaches it through its own I_T nexus and
# SCSI-3 persistent reservations work between them.
# Usage: setup-storage.sh TARGET_IQN INITIATOR_IQN...
set -euo pipefail
target=$1
shift
mkdir -p /etc/rtslib-fb-target/pr /var/target/pr
{
  echo "/backstores/block create name=lun0 dev=/dev/vdb"
  echo "/iscsi create $target"
  echo "/iscsi/$target/tpg1/luns create /backstores/block/lun0"
  for initiator in "$@"; do echo "/iscsi/$target/tpg1/acls create $initiator"; done
  echo "/iscsi/$target/tpg1 set attribute authentication=0"
} | targetcli
targetcli ls /iscsi
