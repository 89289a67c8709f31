#!/bin/bash
# start_httplog.sh — start, stop and query the httplog capture daemon.
#
# Usage (as root):
#   start_httplog.sh {start|stop|status|restart|force-reload|configtest}
#
#   start         check the configuration (as configtest), then start httplog
#                 in the background unless it is running
#   stop          SIGTERM, then wait until httplog has flushed its files and
#                 exited (SIGKILL only after HTTPLOG_STOP_TIMEOUT seconds, and
#                 then it says so loudly)
#   status        is it running; its pid and latest statistics line
#   restart       check the configuration, and only if it is good stop, then
#                 start (a bad configuration leaves the running daemon alone)
#   force-reload  SIGHUP: httplog closes and reopens its log files (logrotate)
#   configtest    "httplog -check" with this configuration: the values, the
#                 log directory (created by start if missing; configtest
#                 creates nothing), the interface and the permission to
#                 capture, without capturing; prints "configuration OK: ..."
#
# Configuration: $HTTPLOG_CONF if set, else /etc/sysconfig/httplog if it
# exists, else httplog.conf next to this script. It is sourced (shell
# KEY=value lines) and every variable it sets is exported to the daemon; see
# httplog.conf for the HTTPLOG_* variables. Settings of this script:
#   HTTPLOG_BIN           the binary (default: ./httplog next to this script)
#   HTTPLOG_OPTS          extra httplog flags, split on white space on purpose
#                         (no quoting or globbing: "-c 1000 -log_split")
#   HTTPLOG_PIDFILE       pid file (default /var/run/httplog.pid)
#   HTTPLOG_STOP_TIMEOUT  whole seconds stop waits after SIGTERM (default 30)
#
# Relative paths (HTTPLOG_DIR, HTTPLOG_PIDFILE, HTTPLOG_BIN, paths in
# HTTPLOG_OPTS) are relative to the directory of the configuration file (/
# without one), whatever the caller's directory: httplog -check and the
# daemon run in that directory.
#
# A bad configuration (a value httplog refuses, HTTPLOG_STOP_TIMEOUT not a
# number, standard output as the log destination, a configuration file
# that does not source cleanly) makes start, restart and configtest exit 6
# with the reason. stop, status and force-reload warn about it and go on
# (HTTPLOG_STOP_TIMEOUT falls back to 30), so that a running daemon can
# always be seen and stopped.
#
# MESSAGES: the daemon's standard error and standard output — the start
# banner (version, interface, filter, ring), the statistics lines ("stats:
# ..."), write-error reports and fatal errors — are appended to the file
#     LOGDIR/httplog.messages      (default /log/httplog/httplog.messages)
# where LOGDIR is the log directory httplog -check reports (HTTPLOG_DIR, or
# -d in HTTPLOG_OPTS), together with one line from this script per start.
# status and stop find the file of a running daemon from its standard error
# (as root; others fall back to HTTPLOG_DIR). They do not go to
# syslog. SIGHUP does not reopen this file: rotate it with logrotate's
# "copytruncate" (it is opened in append mode, so truncation is safe).
# With HTTPLOG_USER set (httplog -u), httplog runs as that user once its
# capture is open; the messages file stays root's (its standard error is
# open on it), the log directory and the day files are the user's.
#
# Exit codes (LSB init scripts): 0 success (also: start when already running,
# stop when not running); 1 generic failure (e.g. no such interface, or
# httplog died at start); 2 invalid arguments; 4 insufficient privilege; 5
# httplog binary not installed; 6 not configured (a bad value, -d -).
# configtest: 0, 1, 5 or 6 as start.
# status: 0 running, 1 dead but the pid file exists, 3 not running.
# force-reload: 7 not running.
#
# Only the pid from the pid file is ever signalled, and only after
# /proc/PID/exe shows that it runs this httplog binary, so a recycled pid is
# never killed. (status, which anyone may run, falls back to argv[0] in
# /proc/PID/cmdline when exe is unreadable.) start, stop, restart and
# force-reload are serialised by flock(1) on $HTTPLOG_PIDFILE.lock.

set -u
umask 027

PROG=httplog
SCRIPT_DIR=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")

usage() {
	echo "Usage: $0 {start|stop|status|restart|force-reload|configtest}"
}

# --- configuration -----------------------------------------------------------

# conf_problem MESSAGE FALLBACK: a configuration error. start, restart and
# configtest refuse to run with it (exit 6); stop, status and force-reload
# warn and go on with FALLBACK.
CONF_PROBLEMS=()
CONF_FALLBACKS=()
conf_problem() {
	CONF_PROBLEMS+=("$1")
	CONF_FALLBACKS+=("$2")
}

# abs_path PATH: PATH made absolute against the configuration's directory.
abs_path() {
	if [[ $1 == /* ]]; then
		printf '%s\n' "$1"
	else
		printf '%s/%s\n' "${CONF_DIR%/}" "$1"
	fi
}

load_config() {
	local conf
	if [[ -n ${HTTPLOG_CONF:-} ]]; then
		conf=$HTTPLOG_CONF
		if [[ ! -r $conf ]]; then
			echo "$PROG: configuration file $conf (HTTPLOG_CONF) is not readable" >&2
			exit 6
		fi
	elif [[ -r /etc/sysconfig/httplog ]]; then
		conf=/etc/sysconfig/httplog
	elif [[ -r $SCRIPT_DIR/httplog.conf ]]; then
		conf=$SCRIPT_DIR/httplog.conf
	else
		conf=
	fi
	CONF_DIR=/
	if [[ -n $conf ]]; then
		if ! CONF_DIR=$(cd "$(dirname "$conf")" && pwd -P); then
			echo "$PROG: cannot enter the directory of the configuration file $conf" >&2
			exit 6
		fi
		# Absolute: ". name" without a slash would search PATH first.
		conf=$CONF_DIR/${conf##*/}
		set -a
		# shellcheck source=/dev/null
		if ! . "$conf"; then
			conf_problem "error in configuration file $conf" "the settings read before the error are used"
		fi
		set +a
	fi
	CONF=${conf:-"(none: built-in defaults)"}

	# Export every HTTPLOG_* variable, also those set in the environment.
	local v
	for v in $(compgen -v HTTPLOG_); do
		export "${v?}"
	done

	BIN=$(abs_path "${HTTPLOG_BIN:-$SCRIPT_DIR/httplog}")
	PIDFILE=$(abs_path "${HTTPLOG_PIDFILE:-/var/run/httplog.pid}")
	STOP_TIMEOUT=${HTTPLOG_STOP_TIMEOUT:-30}
	# Decimal (bash would read 010 as octal), and small enough for $((...)).
	if [[ $STOP_TIMEOUT =~ ^[0-9]{1,9}$ ]]; then
		STOP_TIMEOUT=$((10#$STOP_TIMEOUT))
	else
		conf_problem "HTTPLOG_STOP_TIMEOUT=$STOP_TIMEOUT is not a whole number of seconds" "stop waits the default 30 s"
		STOP_TIMEOUT=30
	fi
	OPTS=()
	read -r -a OPTS <<<"${HTTPLOG_OPTS:-}"
	# What HTTPLOG_DIR names; start takes the directory httplog -check
	# reports (HTTPLOG_OPTS may hold a -d), status and stop that of the
	# running daemon when they can see it.
	LOGDIR=$(abs_path "${HTTPLOG_DIR:-/log/httplog}")
	MESSAGES=$LOGDIR/httplog.messages
	# The binary is started (and recognised) by its absolute, resolved path.
	if [[ -e $BIN ]]; then
		BIN=$(readlink -f "$BIN")
	fi
}

# conf_warn: tell of the configuration's problems, and go on.
conf_warn() {
	local i
	for i in "${!CONF_PROBLEMS[@]}"; do
		echo "$PROG: warning: $CONF: ${CONF_PROBLEMS[i]}; ${CONF_FALLBACKS[i]}" >&2
	done
}

# check_config: the configuration problems of this script, then httplog
# -check with the daemon's flags, environment and directory; sets LOGDIR
# and MESSAGES from what it reports. Returns 0, 6 for a bad configuration
# (httplog's exit code 2), 5 without a binary, 1 for other problems (no
# such interface, a directory that cannot be written).
check_config() {
	local p
	if ((${#CONF_PROBLEMS[@]})); then
		for p in "${CONF_PROBLEMS[@]}"; do
			echo "$PROG: $CONF: $p" >&2
		done
		return 6
	fi
	if [[ ! -f $BIN || ! -x $BIN ]]; then
		echo "$PROG: $BIN is not an executable file (set HTTPLOG_BIN?)" >&2
		return 5
	fi
	local out rc skip=()
	# A running daemon of ours holds its -metrics address: the check must
	# not find it taken (restart stops it only after the check; the start
	# after the stop checks the address again).
	if running; then
		skip=(-metrics=)
	fi
	out=$(cd "$CONF_DIR" && "$BIN" -check "${OPTS[@]}" "${skip[@]}" </dev/null 2>&1)
	rc=$?
	if ((rc != 0)); then
		printf '%s\n' "$out" >&2
		if ((rc == 2)); then
			echo "$PROG: bad configuration ($CONF${OPTS[*]:+, HTTPLOG_OPTS=${OPTS[*]}})" >&2
			return 6
		fi
		return 1
	fi
	# The summary ends in "lines to DESTINATION", then " (new directory)"
	# if -check found the directory missing.
	CHECKED=
	while IFS= read -r p; do
		[[ $p == *"configuration OK: "*", lines to "* ]] && CHECKED=$p
	done <<<"$out"
	if [[ -z $CHECKED ]]; then
		printf '%s\n' "$out" >&2
		echo "$PROG: $BIN -check${OPTS[*]:+ ${OPTS[*]}} printed no configuration summary: does HTTPLOG_OPTS hold -h or -v? ($CONF)" >&2
		return 6
	fi
	local dest=${CHECKED#*, lines to }
	dest=${dest% (new directory)}
	if [[ $dest == "standard output" ]]; then
		echo "$PROG: standard output (-d -, in HTTPLOG_DIR or HTTPLOG_OPTS) cannot be used by a daemon; set a directory in $CONF" >&2
		return 6
	fi
	LOGDIR=${dest%/http-*}
	MESSAGES=$LOGDIR/httplog.messages
	return 0
}

# --- process checks ----------------------------------------------------------

# is_ours PID: PID is a live (not zombie) process running our binary.
is_ours() {
	local pid=$1 exe argv0
	[[ $pid =~ ^[1-9][0-9]*$ && -d /proc/$pid ]] || return 1
	if exe=$(readlink "/proc/$pid/exe" 2>/dev/null) && [[ -n $exe ]]; then
		exe=${exe% (deleted)} # the binary was replaced while running
		[[ $exe == "$BIN" ]]
		return
	fi
	# exe unreadable (not root, or a zombie): compare argv[0], which is the
	# absolute path we started it with; a zombie has an empty cmdline.
	IFS= read -r -d '' argv0 2>/dev/null <"/proc/$pid/cmdline"
	[[ -n ${argv0:-} && $argv0 == "$BIN" ]]
}

# alive PID: the process exists and is not a zombie (whatever it runs).
alive() {
	local stat state
	IFS= read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	state=${stat##*) }
	[[ ${state:0:1} != [ZX] ]]
}

# read_pid: sets PID from the pid file; false if there is none.
read_pid() {
	PID=
	[[ -f $PIDFILE ]] || return 1
	read -r PID 2>/dev/null <"$PIDFILE" || true
	PID=${PID:-}
	return 0
}

# running: true if the pid file names a live httplog of ours (PID set).
running() {
	read_pid && is_ours "$PID"
}

# messages_of PID: sets MESSAGES to the file the daemon's standard error
# is (readable as root), if it is one.
messages_of() {
	local f
	if f=$(readlink "/proc/$1/fd/2" 2>/dev/null) && [[ $f == /* && -f $f ]]; then
		MESSAGES=$f
	fi
}

# describe PID: what a pid that is not ours turns out to be, for messages.
describe() {
	local exe
	if [[ ! $1 =~ ^[1-9][0-9]*$ ]]; then
		echo "not a pid: '$1'"
	elif [[ ! -d /proc/$1 ]]; then
		echo "no such process"
	elif exe=$(readlink "/proc/$1/exe" 2>/dev/null); then
		echo "process $1 is $exe, not $BIN"
	else
		echo "process $1 has exited"
	fi
}

# lock: serialise start/stop/restart/force-reload of this instance. The
# daemon must not inherit fd 9 (do_start closes it).
lock() {
	if command -v flock >/dev/null; then
		if ! { exec 9>>"$PIDFILE.lock"; } 2>/dev/null; then
			echo "$PROG: cannot open $PIDFILE.lock: run this as root" >&2
			exit 4
		fi
		if ! flock -w 60 9; then
			echo "$PROG: another start_httplog.sh holds $PIDFILE.lock" >&2
			exit 1
		fi
	fi
}

# --- actions -----------------------------------------------------------------

do_start() {
	if running; then
		echo "$PROG already running (pid $PID)"
		return 0
	fi
	if [[ -n $PID || -f $PIDFILE ]]; then
		echo "$PROG: removing stale pid file $PIDFILE ($(describe "$PID"))"
		rm -f "$PIDFILE"
	fi
	check_config || return
	# Parents made here are open to all (0755), so that the user of
	# HTTPLOG_USER can reach the directory; httplog gives it the directory.
	if [[ ! -d $LOGDIR ]] && ! { (umask 022 && mkdir -p "$LOGDIR") && chmod 0750 "$LOGDIR"; }; then
		echo "$PROG: cannot create the log directory $LOGDIR" >&2
		return 1
	fi
	if ! printf '%s start_httplog.sh: starting %s (configuration %s)\n' \
		"$(date '+%Y/%m/%d %H:%M:%S')" "${BIN}${OPTS[*]:+ ${OPTS[*]}}" "$CONF" >>"$MESSAGES"; then
		echo "$PROG: cannot write $MESSAGES" >&2
		return 1
	fi
	# What the daemon writes from here on is this run's output.
	local before
	before=$(stat -c %s "$MESSAGES") || before=0

	# The daemon runs in the configuration's directory, as -check did, so
	# that relative paths in HTTPLOG_OPTS mean the same to both.
	# setsid: own session, no controlling terminal, out of the caller's
	# process group. (nohup would not help: Go re-enables SIGHUP when it
	# asks for it, and httplog uses SIGHUP to reopen its files.)
	# The daemon inherits no other descriptor of the caller (a pipe held
	# open could hang whoever reads it; fd 9 is our lock).
	(
		cd "$CONF_DIR" || exit 1
		for fd in /proc/self/fd/*; do
			fd=${fd##*/}
			if ((fd > 2)); then
				{ exec {fd}>&-; } 2>/dev/null
			fi
		done
		exec setsid "$BIN" "${OPTS[@]}" </dev/null >>"$MESSAGES" 2>&1
	) &
	local pid=$!
	# The pid file is world-readable (0644), so that status works for anyone.
	if ! (umask 022 && printf '%s\n' "$pid" >"$PIDFILE.tmp") || ! mv -f "$PIDFILE.tmp" "$PIDFILE"; then
		echo "$PROG: cannot write the pid file $PIDFILE; stopping pid $pid" >&2
		kill -TERM "$pid" 2>/dev/null
		return 1
	fi

	# Wait up to 2 s: success as soon as the start banner shows that the
	# capture is open; failure if the process dies (bad interface, bad flag).
	# (Until the exec, the child is still bash: alive, but not yet ours.)
	local i new
	for ((i = 0; i < 20; i++)); do
		if ! alive "$pid"; then
			wait "$pid" 2>/dev/null
			local rc=$?
			rm -f "$PIDFILE"
			echo "$PROG failed to start (exit code $rc); last messages from $MESSAGES:" >&2
			tail -c +"$((before + 1))" "$MESSAGES" | tail -n 10 >&2
			return 1
		fi
		new=$(tail -c +"$((before + 1))" "$MESSAGES")
		if [[ $new == *" started: "* ]] && is_ours "$pid"; then
			echo "$PROG started (pid $pid)"
			return 0
		fi
		sleep 0.1
	done
	if ! is_ours "$pid"; then
		# Not the binary itself (a wrapper script?): stop, status and
		# force-reload could never recognise it, so do not leave it running.
		echo "$PROG: pid $pid runs $(readlink "/proc/$pid/exe" 2>/dev/null), not $BIN; HTTPLOG_BIN must be the httplog binary itself. Stopping it." >&2
		kill -TERM "$pid" 2>/dev/null
		rm -f "$PIDFILE"
		return 1
	fi
	echo "$PROG started (pid $pid)"
	echo "$PROG: no start banner within 2 s; check $MESSAGES" >&2
	return 0
}

do_stop() {
	if ! running; then
		if [[ -f $PIDFILE ]]; then
			echo "$PROG not running; removing stale pid file $PIDFILE ($(describe "$PID"))"
			rm -f "$PIDFILE"
		else
			echo "$PROG not running"
		fi
		return 0
	fi
	local pid=$PID i
	messages_of "$pid"
	if ! kill -TERM "$pid" 2>/dev/null; then
		if is_ours "$pid"; then
			echo "$PROG: cannot signal pid $pid" >&2
			return 1
		fi
		# It exited just now: fall through.
	fi
	# Poll every 0.2 s; httplog drains its queues and flushes its files.
	for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
		if ! is_ours "$pid"; then
			rm -f "$PIDFILE"
			echo "$PROG stopped (pid $pid)"
			return 0
		fi
		sleep 0.2
	done
	if is_ours "$pid"; then
		local msg="$PROG (pid $pid) did not exit after TERM within $STOP_TIMEOUT s; sent KILL; buffered lines may be lost"
		kill -KILL "$pid" 2>/dev/null
		{
			echo "***************************************************************"
			echo "*** WARNING: $msg"
			echo "***************************************************************"
		} >&2
		printf '%s start_httplog.sh: WARNING: %s\n' "$(date '+%Y/%m/%d %H:%M:%S')" "$msg" >>"$MESSAGES" 2>/dev/null
		for ((i = 0; i < 25; i++)); do
			is_ours "$pid" || break
			sleep 0.2
		done
		if is_ours "$pid"; then
			echo "$PROG: pid $pid survives SIGKILL" >&2
			return 1
		fi
	fi
	rm -f "$PIDFILE"
	echo "$PROG stopped (pid $pid)"
	return 0
}

do_status() {
	if running; then
		echo "$PROG is running (pid $PID)"
		# The latest statistics line of this run (after its start banner).
		local stats=
		messages_of "$PID"
		if [[ -r $MESSAGES ]]; then
			stats=$(awk '/ started: /{s=""} /stats:/{s=$0} END{print s}' "$MESSAGES")
		fi
		if [[ -n $stats ]]; then
			echo "$stats"
		else
			echo "(no statistics line yet: one is written every HTTPLOG_LOG_EVERY packets; messages in $MESSAGES)"
		fi
		return 0
	fi
	if [[ -f $PIDFILE ]]; then
		echo "$PROG is dead but pid file $PIDFILE exists ($(describe "$PID"))"
		return 1
	fi
	echo "$PROG is not running"
	return 3
}

do_reload() {
	if ! running; then
		echo "$PROG is not running"
		return 7
	fi
	if ! kill -HUP "$PID"; then
		echo "$PROG: cannot signal pid $PID" >&2
		return 1
	fi
	echo "$PROG: sent SIGHUP to pid $PID: log files are closed and reopened"
	return 0
}

# --- main --------------------------------------------------------------------

if [[ $# -ne 1 ]]; then
	usage >&2
	exit 2
fi
case $1 in
start | stop | status | restart | force-reload | configtest) ;;
-h | --help | help)
	usage
	exit 0
	;;
*)
	usage >&2
	exit 2
	;;
esac

load_config

case $1 in
start)
	lock
	do_start
	;;
stop)
	conf_warn
	lock
	do_stop
	;;
status)
	conf_warn
	do_status
	;;
restart)
	lock
	check_config || exit
	do_stop || exit
	do_start
	;;
force-reload)
	conf_warn
	lock
	do_reload
	;;
configtest)
	check_config || exit
	printf '%s\n' "$CHECKED"
	echo "$PROG: configuration $CONF; pid file $PIDFILE; messages to $MESSAGES"
	;;
esac
