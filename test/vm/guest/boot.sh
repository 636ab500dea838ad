#!/bin/sh
# Runs inside the VM (kmip-vm-scenario.service, once multi-user is reached): the steps named on the
# kernel command line (kmip_vm.steps=a,b), each reporting JSON lines to /results/checks.jsonl, cut short
# at kmip_vm.deadline (seconds since kernel start) so that the journal still reaches /results before the
# host's own deadline. The unit powers the VM off when this exits.
arg() { sed -n "s/.*kmip_vm\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
steps=$(arg steps)
deadline=$(arg deadline)
now=$(cut -d. -f1 /proc/uptime)
left=$(( ${deadline:-600} - now ))
[ "$left" -gt 10 ] || left=10
echo "kmip-vm: steps ${steps:-none} at ${now}s, ${left}s left" >/dev/ttyS0
timeout -k 5 "$left" /usr/bin/node /opt/kmip-agent/dist/test/vm/guest/main.js "$steps"
status=$?
[ "$status" -eq 0 ] || echo "kmip-vm: main.js exited with $status (124: cut short at the deadline)" >/dev/ttyS0
journalctl -b --no-pager -o short-monotonic >/results/journal.txt 2>&1
systemd-analyze >/results/analyze.txt 2>&1
echo "kmip-vm: done at $(cut -d' ' -f1 /proc/uptime)s" >/dev/ttyS0
