#!/bin/sh
# Before the files go (dpkg: "remove" or "upgrade" NEW; rpm: 0 when erasing,
# 1 on an upgrade). On removal, stop and disable the units so nothing
# points at a missing binary; an upgrade leaves them running.
set -e

case "$1" in
	remove|0) ;;
	*) exit 0 ;;
esac
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now ihr-worker.timer ihr-worker.service ihr-worker-serve.service >/dev/null 2>&1 || true
fi
exit 0
