#!/usr/bin/env bash
# Builds the VM test image (recipe: ../shared/DESIGN.md, "A real kernel for tests"): a Debian bookworm
# rootfs with the stock kernel, systemd, cryptsetup, PyKMIP and this machine's node, as an ext4 image
# plus the kernel and initrd to boot it with. The checkout is not copied in: the guest mounts it
# read-only over 9p at /opt/kmip-agent (tag "proj"), the run's inputs (PKI, PyKMIP config) read-only at
# /vm-inputs (tag "inputs") and a per-boot results share at /results (tag "results"). PyKMIP starts
# early in boot from /vm-inputs (before the agent, as an appliance's key server would be up), and a unit
# runs /opt/kmip-agent/test/vm/guest/boot.sh once multi-user is reached.
# Usage: build-image.sh OUT_DIR (OUT_DIR must not exist; it gets vmlinuz, initrd.img, rootfs.img).
# The harness caches OUT_DIR keyed by a hash of this file and of node's version: edit it and it rebuilds.
set -euo pipefail
out=$1
packages=(
  systemd systemd-sysv dbus udev kmod       # a real boot, modules (dm_crypt, target_core_user, tcm_loop)
  linux-image-amd64 initramfs-tools         # Debian's stock kernel: device-mapper, sed-opal, TCMU
  libcryptsetup12 cryptsetup-bin            # the addon's LUKS2 backend; cryptsetup status/open in checks
  python3-pykmip openssl                    # the key server on the guest's loopback, its throwaway PKI
  e2fsprogs util-linux procps sg3-utils     # mkfs/mount/losetup for volumes; sg_* to probe the SCSI disk
)
mirror=/etc/apt/sources.list.d/debian.sources
[ -f "$mirror" ] || mirror=http://deb.debian.org/debian
work=$(mktemp -d "${out}.building-XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
  --customize-hook='cp /usr/bin/node "$1/usr/bin/node"' \
  bookworm "$root" "$mirror"
cat >>"$root/etc/fstab" <<'FSTAB'
/dev/vda / ext4 rw,noatime 0 1
proj /opt/kmip-agent 9p trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose 0 0
inputs /vm-inputs 9p trans=virtio,version=9p2000.L,ro,msize=524288 0 0
results /results 9p trans=virtio,version=9p2000.L,msize=524288 0 0
FSTAB
mkdir -p "$root/opt/kmip-agent" "$root/vm-inputs" "$root/results"
# 9p over virtio loaded before the mounts: loaded by the first mount instead, its channels can come up
# after the other mounts have already failed with "no channels available".
printf '9pnet_virtio\n9p\n' >"$root/etc/modules-load.d/kmip-vm-9p.conf"
# TCG is slow: nothing runs at boot that the tests do not need.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service \
  fstrim.timer systemd-tmpfiles-clean.timer getty@tty1.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
echo kmip-vm >"$root/etc/hostname"
# The console belongs to the scenario's report, not to a login prompt.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
cat >"$root/etc/systemd/system/kmip-vm-scenario.service" <<'UNIT'
[Unit]
Description=kmip-agent VM test scenario (reports to /results and the serial console, then powers off)
After=multi-user.target
RequiresMountsFor=/opt/kmip-agent /results
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/opt/kmip-agent/test/vm/guest/boot.sh
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/kmip-vm-scenario.service "$root/etc/systemd/system/multi-user.target.wants/"
cat >"$root/etc/systemd/system/kmip-vm-pykmip.service" <<'UNIT'
[Unit]
Description=PyKMIP key server on the guest loopback (VM tests; config and PKI from /vm-inputs)
DefaultDependencies=no
After=local-fs.target
Before=kmip-agent.service
RequiresMountsFor=/vm-inputs /var/lib
ConditionPathExists=/vm-inputs/pykmip/server.conf

[Service]
StateDirectory=kmip-vm
WorkingDirectory=/var/lib/kmip-vm
ExecStart=/usr/bin/pykmip-server -f /vm-inputs/pykmip/server.conf -l /var/lib/kmip-vm/pykmip.log

[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/kmip-vm-pykmip.service "$root/etc/systemd/system/multi-user.target.wants/"
rm -f "$root"/var/cache/apt/archives/*.deb
cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
cp "$root"/boot/initrd.img-* "$work/initrd.img"
mkfs.ext4 -q -F -L kmip-vm -d "$root" "$work/rootfs.img" 2500M
rm -rf "$root"
mv "$work" "$out"
trap - EXIT
