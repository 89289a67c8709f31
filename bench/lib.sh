#!/usr/bin/env bash
# bench/lib.sh — helpers shared by the benchmark scripts of bench/: sourced,
# not run. Every helper prints what it does on standard error, so a run's
# output tells how it was made.

# say prints a step of the run.
say() { printf '== %s\n' "$*" >&2; }

# run prints a command, then runs it.
run() {
	printf '+ %s\n' "$*" >&2
	"$@"
}

# need_root stops unless the script runs as root (namespaces, AF_PACKET).
need_root() {
	if [[ $(id -u) -ne 0 ]]; then
		echo "$0: must run as root (network namespaces, raw sockets)" >&2
		exit 1
	fi
}

# need_pkgs installs the Debian packages given as PACKAGE or PACKAGE:COMMAND
# whose command is missing; apt-get update runs first, once, only when
# something has to be installed.
need_pkgs() {
	local missing=() spec pkg cmd
	for spec in "$@"; do
		pkg=${spec%%:*}
		cmd=${spec#*:}
		if ! command -v "$cmd" >/dev/null 2>&1 && ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$pkg")
		fi
	done
	if ((${#missing[@]} > 0)); then
		say "installing Debian packages: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		run apt-get update -qq
		run apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
}

# cpu_busy prints the percentage of the machine's CPU time that was busy
# (not idle or iowait) over the next second, from /proc/stat.
cpu_busy() {
	local a b
	a=$(head -1 /proc/stat)
	sleep 1
	b=$(head -1 /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN {
		split(a, x); split(b, y)
		for (i = 2; i <= 9; i++) total += y[i] - x[i]
		idle = (y[5] - x[5]) + (y[6] - x[6])
		printf "%d", (total > 0 ? 100 * (total - idle) / total : 0)
	}'
}

# wait_quiet waits until the machine is quiet before a measurement: no
# other test run (no process matching 'go test|httplog.test'), the CPUs
# busy less than $QUIET_CPU percent (default 20) over one second, and the
# 1-minute load average below $QUIET_LOAD (default 1.5: this script's own
# previous runs raise it too). It checks every 30 s for up to $QUIET_WAIT
# seconds (default 600); after that it goes on, with a warning on the
# output: the numbers of a busy machine are still printed, but flagged.
wait_quiet() {
	local waited=0 load busy cpu
	while :; do
		busy=$(pgrep -f 'go test|httplog\.test' | tr '\n' ' ' || true)
		cpu=$(cpu_busy)
		read -r load _ </proc/loadavg
		if [[ -z $busy ]] && ((cpu < ${QUIET_CPU:-20})) && awk -v l="$load" -v m="${QUIET_LOAD:-1.5}" 'BEGIN { exit !(l < m) }'; then
			say "machine quiet: CPU ${cpu}% busy, load $load, no go test running"
			return 0
		fi
		if ((waited >= ${QUIET_WAIT:-600})); then
			say "WARNING: machine still busy after ${waited}s (CPU ${cpu}%, load $load, other tests: ${busy:-none}); measuring anyway"
			return 0
		fi
		say "machine busy (CPU ${cpu}%, load $load, other tests: ${busy:-none}); waiting 30 s"
		sleep 30
		waited=$((waited + 30))
	done
}

# machine_line prints one line describing the machine and toolchain.
machine_line() {
	local model
	model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	printf 'machine: %s CPUs, %s, kernel %s, %s\n' "$(nproc)" "$model" "$(uname -r)" "$(go version 2>/dev/null || echo 'go: not found')"
}

# The processes and network namespaces of this run, ended and removed on
# exit by cleanup (scripts set: trap cleanup EXIT).
pids=()
namespaces=()
cleanup() {
	local pid ns
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	for ns in "${namespaces[@]}"; do
		ip netns del "$ns" 2>/dev/null || true
	done
}

# prepare_out NAME: checks $PCAP, builds $HTTPLOG if missing, makes a fresh
# bench/out/NAME (in $out) with a copy of the binary (so that a rebuild
# during the run changes nothing), and prints the machine and version.
prepare_out() {
	if [[ ! -r $PCAP ]]; then
		echo "$1.sh: $PCAP: not found; make it with bench/traffic.sh" >&2
		exit 1
	fi
	[[ -x $HTTPLOG ]] || run ./make.sh
	out=bench/out/$1
	rm -rf "$out"
	mkdir -p "$out"
	run cp "$HTTPLOG" "$out/httplog"
}

# count_expected [httplog flags]: reads $PCAP once into the page cache,
# then sets $stats (httplog -r's statistics line), $packets, and $expected
# (its CQ+CR: the lines every capturer should log).
count_expected() {
	say "reading $PCAP once into the page cache"
	cat "$PCAP" >/dev/null
	say "expected lines: httplog -r $PCAP $* (CQ+CR of its statistics line)"
	stats=$("$out/httplog" -r "$PCAP" -p 80 -d "$out/expected" -log_every 0 "$@" 2>&1 | grep 'stats:')
	echo "$stats"
	# shellcheck disable=SC2034 # used by the scripts that call this
	packets=$(stat_field packets "$stats")
	# shellcheck disable=SC2034
	expected=$(($(stat_field CQ "$stats") + $(stat_field CR "$stats")))
}

# stat_field NAME LINE prints the number after NAME= in a statistics line.
stat_field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$2"; }


# variant NAME sets vcmd to the binary and flags of the httplog variant
# NAME, a tool or capturer named httplog+NAME: the variable HL_NAME holds
# "BINARY [FLAG ...]", e.g. HL_pair="./httplog -pair", HL_base="bench/out/
# httplog-d77b0d5", so that builds and flag sets run side by side in one
# run. The binary is copied into $out (as bin-NAME) first, as $HTTPLOG is.
variant() {
	local spec
	spec=HL_$1
	if [[ -z ${!spec:-} ]]; then
		echo "variant httplog+$1: set $spec to \"BINARY [FLAG ...]\"" >&2
		exit 2
	fi
	read -r -a vcmd <<<"${!spec}"
	# Not $out/httplog+NAME: that is the variant's output directory.
	if [[ ! -x $out/bin-$1 ]]; then
		run cp "${vcmd[0]}" "$out/bin-$1"
	fi
	vcmd[0]=$out/bin-$1
}

# log_lines DIR counts the lines httplog wrote into DIR, in either format.
log_lines() { { cat "$1"/http-*.log "$1"/http-*.json 2>/dev/null || true; } | wc -l; }
