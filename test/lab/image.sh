#!/usr/bin/env bash
# Builds the lab's guest image from Debian packages only: one bookworm rootfs (mmdebstrap) used
# by every VM, whose role comes from the kernel command line. The host's node binary is copied in
# (same architecture and glibc) for the lab's guest helper and raw baseline; the agent itself runs from
# its package, on the runtime inside it.
# Usage: image.sh OUT_DIR   → OUT_DIR/{root.img,vmlinuz,initrd.img,KEY}
set -euo pipefail
out=${1:?usage: image.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
packages=linux-image-amd64,systemd-sysv,udev,kmod,dbus,sg3-utils,lvm2,targetcli-fb,open-iscsi,multipath-tools,nfs-kernel-server,nfs-common,sqlite3,iproute2,arping,e2fsprogs,procps,util-linux,psmisc,ca-certificates,curl

# The cache key covers everything that goes into the image; a change rebuilds it.
key=$( { cat "$0" "$here/guest/boot-unit.service"; echo "$packages"; node --version; } | sha256sum | cut -c1-16)
if [[ -f $out/KEY && $(cat "$out/KEY") == "$key" && -f $out/root.img ]]; then
  echo "image: reusing $out (key $key)"
  exit 0
fi
mkdir -p "$out"
rm -rf "$out/rootfs" "$out/root.img" "$out/KEY"
echo "image: building bookworm rootfs with mmdebstrap (key $key)"
mmdebstrap --variant=minbase --include="$packages" --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/{doc,man,locale,info}/*' \
  bookworm "$out/rootfs" http://deb.debian.org/debian
r=$out/rootfs
install -m 0755 "$(command -v node)" "$r/usr/bin/node"
install -m 0644 "$here/guest/boot-unit.service" "$r/etc/systemd/system/nfs-ha-lab-boot.service"
ln -sf /etc/systemd/system/nfs-ha-lab-boot.service "$r/etc/systemd/system/multi-user.target.wants/nfs-ha-lab-boot.service"
# The agent owns the NFS server and the iSCSI login is the lab's business: nothing at boot.
rm -f "$r"/etc/systemd/system/*.wants/{nfs-server,open-iscsi,iscsid,nfs-client.target,rpcbind,lvm2-monitor,multipathd}*
# Nothing else at boot that the lab does not use: the LIO restore service (the storage VM is
# configured by the lab and never rebooted) and e2scrub held a rebooting node up for minutes.
# Logins, the optional filesystems and the binfmt and module units: a guest boots on one
# emulated CPU beside the others, and logind alone took 16 s of it (D-Bus stays: targetcli needs
# it). The timers would run apt or fstrim in the middle of a scenario's timings.
masked=(rtslib-fb-targetctl.service e2scrub_reap.service e2scrub_all.timer
  systemd-logind.service systemd-user-sessions.service systemd-update-utmp.service
  getty@tty1.service serial-getty@ttyS0.service
  dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount sys-fs-fuse-connections.mount
  proc-sys-fs-binfmt_misc.automount systemd-binfmt.service modprobe@drm.service modprobe@efi_pstore.service modprobe@fuse.service
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer fstrim.timer)
for unit in "${masked[@]}"; do ln -sf /dev/null "$r/etc/systemd/system/$unit"; done
echo 'root:lab' | chroot "$r" chpasswd
# HA-LVM: each node's LVM system ID is its hostname, which the boot script sets to the node id.
sed -i 's/^\t# system_id_source = "none"/\tsystem_id_source = "uname"/' "$r/etc/lvm/lvm.conf"
grep -qP '^\tsystem_id_source = "uname"' "$r/etc/lvm/lvm.conf"
# The agent arms /dev/watchdog while active and pets it after each committed renewal. A node
# whose agent died must be reset before the peer can fence it: the lab's timing (run.ts) allows
# at most 8.4 s before its deadline (shared/timing.ts maxWatchdogTimeoutMs, checked by the agent at
# start) and must also come before early fencing (suspectAfterMs 8 s): 6 s.
echo softdog > "$r/etc/modules-load.d/softdog.conf"
echo 'options softdog soft_margin=6' > "$r/etc/modprobe.d/softdog.conf"
# Every boot runs on one emulated CPU beside the other guests, and the lab boots a node about ten
# times. A small initramfs: the root is ext4 on a virtio disk, and the default (MODULES=most)
# packs 139 MB that each boot unpacks and probes (32 MB with this list). No modules for hardware
# the lab never uses (floppy, IDE, SMBus, PS/2 mouse, PC speaker) or CPU features it does not
# need (KVM, AES, cpufreq). One guest alone reached basic.target in 24-27 s instead of 28 s.
sed -i 's/^MODULES=most$/MODULES=list/' "$r/etc/initramfs-tools/initramfs.conf"
grep -q '^MODULES=list$' "$r/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk ext4 >> "$r/etc/initramfs-tools/modules"
chroot "$r" update-initramfs -u -k all
printf 'blacklist %s\n' floppy ata_piix i2c_piix4 psmouse pcspkr kvm_amd kvm_intel kvm aesni_intel ghash_clmulni_intel powernow_k8 > "$r/etc/modprobe.d/lab-unused.conf"
mkdir -p "$r/etc/rtslib-fb-target/pr" "$r/var/target/pr" "$r/srv/nfs" "$r/lab"
printf '/dev/vda / ext4 rw 0 1\n' > "$r/etc/fstab"
cp "$r"/boot/vmlinuz-* "$out/vmlinuz"
cp "$r"/boot/initrd.img-* "$out/initrd.img"
mke2fs -q -t ext4 -d "$r" "$out/root.img" 2G
rm -rf "$r"
echo "$key" > "$out/KEY"
echo "image: ready in $out"
