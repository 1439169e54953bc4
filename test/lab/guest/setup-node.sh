#!/bin/bash
# Lab only: a storage node joins the SAN. Its own initiator name, an iSCSI login to each of the
# LUN's two target ports (automatic again after a reboot), and dm-multipath over the two paths.
# Prints the multipath map's name (its WWID, the same on both nodes).
# Usage: setup-node.sh INITIATOR_IQN PORTAL
set -euo pipefail
initiator=$1
portal=$2
echo "InitiatorName=$initiator" > /etc/iscsi/initiatorname.iscsi
# A lost path is noticed within seconds (NOP-Out every 2 s); multipathd then sets the session's
# recovery timeout to its fast_io_fail_tmo, after which I/O queued on the path fails over.
sed -i -e 's/^node.conn\[0\].timeo.noop_out_interval = .*/node.conn[0].timeo.noop_out_interval = 2/' \
  -e 's/^node.conn\[0\].timeo.noop_out_timeout = .*/node.conn[0].timeo.noop_out_timeout = 2/' /etc/iscsi/iscsid.conf
# The configuration fencing needs (nfs-ha-agent validate checks it): no reservation_key, so
# multipathd never registers a key by itself; a bounded no_path_retry, so I/O with no path left
# fails instead of queueing for ever; the tur checker, which a reservation does not fail.
cat > /etc/multipath.conf <<'CONF'
defaults {
	user_friendly_names no
	find_multipaths off
}
blacklist {
	devnode "^vd[a-z]"
}
overrides {
	path_checker tur
	no_path_retry 3
	fast_io_fail_tmo 3
}
CONF
# LVM looks at the multipath maps only (the advice for LVM on dm-multipath): scanning the sd paths
# too would find the same PV on each and costs every LVM command a read of every path.
sed -i 's/^devices {$/devices {\n\tglobal_filter = [ "a|^\/dev\/mapper\/|", "r|.*|" ]/' /etc/lvm/lvm.conf
grep -q 'global_filter = \[ "a|^/dev/mapper/|"' /etc/lvm/lvm.conf
systemctl start iscsid multipathd
iscsiadm -m discovery -t sendtargets -p "$portal" >/dev/null
iscsiadm -m node --op update -n node.startup -v automatic
iscsiadm -m node --login >/dev/null
systemctl enable iscsid open-iscsi multipathd 2>/dev/null
udevadm settle
for _ in $(seq 60); do
  map=$(multipathd show maps raw format "%n %N" 2>/dev/null | awk '$2 == 2 { print $1; exit }')
  [[ -n $map ]] && { echo "$map"; exit 0; }
  sleep 1
done
echo "no multipath map with two paths after 60 s:" >&2
multipath -ll >&2
exit 1
