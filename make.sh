#!/usr/bin/env bash
# make.sh — check, build, install and uninstall httplog.
#
#   ./make.sh                      gofmt (no file may need formatting), go vet,
#                                  then go build -o httplog, with cgo off: a
#                                  static binary that runs on any Linux of the
#                                  same architecture, whatever its libc
#   ./make.sh install [DESTDIR]    build as above, then install (as root):
#       /usr/local/sbin/httplog, /usr/local/sbin/start_httplog.sh (mode 0755)
#       /etc/sysconfig/httplog      httplog.conf with HTTPLOG_USER=httplog
#                                   (mode 0644; an existing one is kept)
#       /usr/local/lib/systemd/system/httplog.service   (from dist/)
#       /etc/logrotate.d/httplog                        (from dist/)
#       /usr/local/share/man/man8/httplog.8             (from dist/)
#       /log/httplog                the log directory, mode 0750, user httplog's
#       the system user httplog     (useradd --system), if missing
#     With a DESTDIR other than /, the files go under DESTDIR (for packaging),
#     and the user is neither made nor given the log directory: that is for
#     the machine that installs the package. HTTPLOG_BIN=FILE installs FILE
#     instead of building httplog.
#   ./make.sh uninstall [DESTDIR]  stop httplog if it runs (real install only)
#       and remove what install added, except the logs (/log/httplog), the
#       user httplog who owns them, and /etc/sysconfig/httplog if it was
#       changed since install (an unchanged one is removed).
#
# Uses only the Go toolchain already installed (modules come from go.sum /
# the module cache as usual); it downloads no tools. Run from anywhere: it
# works in its own directory.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"

PROG=make.sh
USER_NAME=httplog
SBIN=/usr/local/sbin
UNIT=/usr/local/lib/systemd/system/httplog.service
SYSCONF=/etc/sysconfig/httplog
LOGROTATE=/etc/logrotate.d/httplog
MANPAGE=/usr/local/share/man/man8/httplog.8
LOGDIR=/log/httplog

build() {
	echo "== gofmt -l ."
	local unformatted
	unformatted=$(gofmt -l .)
	if [[ -n $unformatted ]]; then
		echo "$PROG: these files are not gofmt-formatted (run gofmt -w on them):" >&2
		while IFS= read -r f; do
			echo "  $f" >&2
		done <<<"$unformatted"
		exit 1
	fi

	echo "== go vet ./..."
	go vet ./...

	echo "== CGO_ENABLED=0 go build -o httplog ."
	CGO_ENABLED=0 go build -o httplog .
	./httplog -v
}

# sysconfig: the configuration install writes, httplog.conf with
# HTTPLOG_USER set to the user it makes.
sysconfig() {
	if ! grep -q '^HTTPLOG_USER=$' httplog.conf; then
		echo "$PROG: httplog.conf has no empty HTTPLOG_USER= line to set" >&2
		exit 1
	fi
	sed "s/^HTTPLOG_USER=\$/HTTPLOG_USER=$USER_NAME/" httplog.conf
}

# set_destdir DIR: D is the prefix of every path ("" for /); REAL is 1 for
# a real install (no DESTDIR, or /).
set_destdir() {
	D=${1:-}
	D=${D%/}
	REAL=0
	if [[ -z $D ]]; then
		REAL=1
	elif [[ $D != /* ]]; then
		D=$PWD/$D # install changes no directory, but say it absolute
	fi
}

systemd_running() {
	[[ -d /run/systemd/system ]] && command -v systemctl >/dev/null
}

do_install() {
	set_destdir "${1:-}"
	local bin=${HTTPLOG_BIN:-}
	if [[ -z $bin ]]; then
		build
		bin=./httplog
	fi
	echo "== install into ${D:-/}"
	install -D -m 0755 "$bin" "$D$SBIN/httplog"
	install -D -m 0755 start_httplog.sh "$D$SBIN/start_httplog.sh"
	install -D -m 0644 dist/httplog.service "$D$UNIT"
	install -D -m 0644 dist/httplog.logrotate "$D$LOGROTATE"
	install -D -m 0644 dist/httplog.8 "$D$MANPAGE"
	echo "  $SBIN/httplog, $SBIN/start_httplog.sh, $UNIT, $LOGROTATE, $MANPAGE"
	if [[ -e $D$SYSCONF ]]; then
		echo "  kept $SYSCONF as it is (install never overwrites it)"
	else
		local tmp
		tmp=$(mktemp)
		sysconfig >"$tmp"
		install -D -m 0644 "$tmp" "$D$SYSCONF"
		rm -f "$tmp"
		echo "  $SYSCONF (HTTPLOG_USER=$USER_NAME)"
	fi
	# The parent of the log directory is root's and open to all (0755), so
	# that the user can reach its directory; see README.md on a removed
	# directory.
	if [[ ! -d $D${LOGDIR%/*} ]]; then
		install -d -m 0755 "$D${LOGDIR%/*}"
	fi
	install -d -m 0750 "$D$LOGDIR"
	if ((REAL)); then
		if ! getent passwd "$USER_NAME" >/dev/null; then
			useradd --system --user-group --no-create-home --home-dir /nonexistent \
				--shell /usr/sbin/nologin --comment "httplog daemon" "$USER_NAME"
			echo "  made the system user $USER_NAME"
		else
			echo "  the user $USER_NAME exists already"
		fi
		chown "$USER_NAME:$USER_NAME" "$LOGDIR"
		echo "  $LOGDIR (mode 0750, user $USER_NAME's)"
		if systemd_running; then
			systemctl daemon-reload
			echo "Start it with: systemctl enable --now httplog (or $SBIN/start_httplog.sh start)"
		else
			echo "Start it with: $SBIN/start_httplog.sh start"
		fi
	else
		echo "  $LOGDIR (mode 0750)"
		echo "  DESTDIR is set: the user $USER_NAME is not made, and $LOGDIR not given to it;"
		echo "  on the target machine: useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $USER_NAME"
		echo "  and chown $USER_NAME:$USER_NAME $LOGDIR (httplog -u $USER_NAME also gives it the directory at start)"
	fi
}

do_uninstall() {
	set_destdir "${1:-}"
	if ((REAL)); then
		if systemd_running && systemctl is-active --quiet httplog 2>/dev/null; then
			systemctl disable --now httplog
			echo "  stopped and disabled httplog.service"
		elif systemd_running; then
			systemctl disable httplog 2>/dev/null || true
		fi
		if [[ -x $SBIN/start_httplog.sh ]] && "$SBIN/start_httplog.sh" status >/dev/null 2>&1; then
			"$SBIN/start_httplog.sh" stop
		fi
	fi
	echo "== uninstall from ${D:-/}"
	local f
	for f in "$SBIN/httplog" "$SBIN/start_httplog.sh" "$UNIT" "$LOGROTATE" "$MANPAGE"; do
		if [[ -e $D$f ]]; then
			rm -f "$D$f"
			echo "  removed $f"
		fi
	done
	if [[ -e $D$SYSCONF ]]; then
		if cmp -s <(sysconfig) "$D$SYSCONF"; then
			rm -f "$D$SYSCONF"
			echo "  removed $SYSCONF (unchanged since install)"
		else
			echo "  kept $SYSCONF: it was changed since install (remove it by hand)"
		fi
	fi
	if ((REAL)) && systemd_running; then
		systemctl daemon-reload
	fi
	echo "  kept the logs in $LOGDIR and the user $USER_NAME who owns them (remove them with rm -r $LOGDIR; userdel $USER_NAME)"
}

case ${1:-} in
"")
	build
	;;
install | uninstall)
	if (($# > 2)); then
		echo "Usage: $0 [install [DESTDIR] | uninstall [DESTDIR]]" >&2
		exit 2
	fi
	"do_$1" "${2:-}"
	;;
*)
	echo "Usage: $0 [install [DESTDIR] | uninstall [DESTDIR]]" >&2
	exit 2
	;;
esac
