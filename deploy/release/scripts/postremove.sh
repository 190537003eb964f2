#!/bin/sh
# After the files are gone. `dpkg -r` (and rpm -e, which keeps an edited
# worker.yaml as .rpmsave) leaves the configuration in /etc/ihr; `dpkg
# --purge` deletes it. The ledger (/var/lib/ihr) and the user ihr stay
# even on a purge: the ledger is what keeps every row recorded exactly
# once, so only an operator deletes it (rm -r /var/lib/ihr; userdel ihr).
set -e

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
