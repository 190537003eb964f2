#!/bin/sh
# After the files are in place (dpkg: "configure" [old version]; rpm: the
# number of installed versions). Creates the system user and the ledger's
# folder; enables and starts nothing, since /etc/ihr/worker.yaml is still
# the example. On an upgrade, a running ihr-worker-serve is restarted on
# the new binary (try-restart starts nothing that was stopped).
set -e

upgrade=
case "$1" in
	configure) [ -n "$2" ] && upgrade=1 ;;
	abort-*) exit 0 ;;
	[2-9]|[1-9][0-9]*) upgrade=1 ;;
esac

if ! getent group ihr >/dev/null 2>&1; then
	groupadd --system ihr
fi
if ! getent passwd ihr >/dev/null 2>&1; then
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	useradd --system --gid ihr --home-dir /var/lib/ihr --no-create-home \
		--shell "$nologin" --comment "ihr-worker" ihr
fi
install -d -o ihr -g ihr -m 0750 /var/lib/ihr

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
	if [ -n "$upgrade" ]; then
		systemctl try-restart ihr-worker-serve.service || true
	fi
fi

if [ -z "$upgrade" ]; then
	cat <<'MSG'
ihr installed: /usr/bin/ihr-worker, /usr/bin/ihr-api, systemd units
ihr-worker.service + ihr-worker.timer (nightly run) and ihr-worker-serve.service.
Nothing is enabled or started. Next:
  1. edit /etc/ihr/worker.yaml (secrets go in /etc/ihr/secrets/, mode 0600)
  2. check it:  ihr-worker validate --config /etc/ihr/worker.yaml --source NAME SAMPLE.csv
  3. enable one of:
       systemctl enable --now ihr-worker.timer           # a nightly run at 02:00
       systemctl enable --now ihr-worker-serve.service   # serve: each source on its schedule
The ledger lives in /var/lib/ihr (owned by the system user ihr). See
/usr/share/doc/ihr/README.md and docs/install.md.
MSG
fi
exit 0
