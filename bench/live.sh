#!/usr/bin/env bash
# bench/live.sh — httplog on a live interface beside tcpdump (the floor)
# and httpry, the same capture replayed at several rates.
#
# Two network namespaces of this run (hlr-tx-PID, hlr-rx-PID) joined by a
# veth pair. tcpreplay sends $PCAP (default bench/out/nginx.pcap, from
# bench/traffic.sh) into the tx end; the capturer listens on the rx end,
# which holds the capture's server address 10.201.0.1/24, so that httplog
# finds CQ/CR as it does on the server. The replayed frames are addressed
# to other MAC addresses, so the rx namespace's own IP stack ignores them
# (no resets come back); offloads are off on both ends, as in traffic.sh.
#
# For each rate of $RATES (packets/s for tcpreplay --pps, or "top" for
# --topspeed) and each capturer of $CAPTURERS, in turn:
#   start the capturer in the rx namespace, wait $START_WAIT s;
#   tcpreplay (in the tx namespace); wait $STOP_WAIT s (libpcap's ring
#   blocks are handed over after up to 1 s), then
#   until the capturer's CPU time stops growing (it has caught up),
#   read its CPU time (every thread's, from /proc/PID/task/*/schedstat, in
#   nanoseconds), stop it (tcpdump and httpry
#   with SIGINT, httplog with SIGTERM) and read what it says at exit.
#
#   tcpdump   tcpdump -i RX -n -s 1560 -B 8192 -w /dev/null  (the floor: the
#             same snap length and ring size as httplog's defaults)
#   httplog   httplog -i RX -p 80 -d DIR -log_every 0
#   httpry    httpry -i RX -o DIR/httpry.txt
#
# Reported per run: the rate tcpreplay achieved, packets it sent, packets
# the capturer saw, lines logged against lines expected (CQ+CR of httplog -r
# on the same packets), kernel drops (httplog's statistics line, tcpdump's
# "dropped by kernel"), packets dropped before any socket saw them (the
# growth of the kernel's softnet backlog drops), CPU seconds (the scheduler's,
# with the user+sys split of /proc/PID/stat's clock ticks beside it), in
# all and per million packets sent, and the context switches of all the
# capturer's threads (/proc/PID/task/*/status). CPU here is the capturer's process only: the
# kernel's work of filtering and copying a frame into the ring runs in the
# sender's softirq and is charged to tcpreplay, alike for every capturer.
#
# Usage (root): bench/live.sh
# Parameters (environment): PCAP, RATES ("50000 100000 200000 top"),
# CAPTURERS ("tcpdump httplog httpry"), LIMIT (packets to replay per run;
# default all), START_WAIT (2), STOP_WAIT (1.5), HTTPLOG (./httplog),
# HTTPLOG_EXTRA (more httplog flags, e.g. "-cpuprofile bench/out/live.prof"),
# HL_NAME for a capturer httplog+NAME: "BINARY [FLAG ...]" of a variant run
# beside the others (bench/lib.sh: variant), STDOUT_NULL (1: each capturer's
# standard output goes to /dev/null, not to a file; with a variant's "-d -"
# its lines are then formatted and written but never reach the page cache,
# which separates httplog's own cost from the kernel's writing),
# REPLAY_CPU (tcpreplay runs on this CPU only, taskset -c; the kernel's
# work on its frames, up to the copy into the capturer's ring, runs in its
# softirq on the same CPU: to tell what a capturer pays for sharing a CPU
# with the replay, run it pinned beside it and apart, e.g. a variant whose
# BINARY is a script that execs taskset -c N httplog), SPLIT_REPLAY (N:
# the capture's connections are split by client port into N parts, each
# replayed by a tcpreplay of its own on CPU i mod the CPUs, at rate/N, at
# once: the frames then reach the capture ring from N CPUs' softirqs, as
# a NIC's RSS queues feed a server's cores, instead of all from one, whose
# cache a capturer running on that CPU reads warm), QUIET_LOAD,
# QUIET_WAIT (see bench/lib.sh).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

PCAP=${PCAP:-bench/out/nginx.pcap}
read -r -a rates <<<"${RATES:-50000 100000 200000 top}"
read -r -a capturers <<<"${CAPTURERS:-tcpdump httplog httpry}"
LIMIT=${LIMIT:-}
REPLAY_CPU=${REPLAY_CPU:-}
SPLIT_REPLAY=${SPLIT_REPLAY:-1}
if ((SPLIT_REPLAY > 1)) && [[ -n $LIMIT || -n $REPLAY_CPU ]]; then
	echo "live.sh: SPLIT_REPLAY with LIMIT or REPLAY_CPU: each part would be cut, not the whole; each replay has its own CPU" >&2
	exit 2
fi
START_WAIT=${START_WAIT:-2}
STOP_WAIT=${STOP_WAIT:-1.5}
read -r -a httplog_extra <<<"${HTTPLOG_EXTRA:-}"
HTTPLOG=${HTTPLOG:-./httplog}

need_root
need_pkgs tcpreplay tcpdump httpry iproute2:ip ethtool
prepare_out live
machine_line
"$out/httplog" -v
hz=$(getconf CLK_TCK)

tx=hlr-tx-$$ rx=hlr-rx-$$
vt=hlrt$$ vr=hlrr$$
namespaces=("$tx" "$rx")
trap cleanup EXIT
trap 'exit 130' INT TERM

say "namespaces $tx (tcpreplay on $vt) and $rx (capture on $vr, 10.201.0.1/24)"
run ip netns add "$tx"
run ip netns add "$rx"
run ip link add "$vt" netns "$tx" type veth peer name "$vr" netns "$rx"
run ip -n "$rx" addr add 10.201.0.1/24 dev "$vr"
for ns in "$tx" "$rx"; do
	run ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1
	run ip -n "$ns" link set lo up
done
run ip -n "$tx" link set "$vt" up
run ip -n "$rx" link set "$vr" up
run ip netns exec "$tx" ethtool -K "$vt" tso off gso off gro off
run ip netns exec "$rx" ethtool -K "$vr" tso off gso off gro off

# The parts of SPLIT_REPLAY: part i holds the connections whose client
# port (the one that is not 80), halved, is i modulo N, both directions
# (halved: Linux gives connect() even ports). Frames that are not TCP over
# IPv4 are in no part (nginx.pcap's few IPv6 neighbour packets).
parts=("$PCAP")
if ((SPLIT_REPLAY > 1)); then
	need_pkgs tcpdump
	parts=()
	for ((i = 0; i < SPLIT_REPLAY; i++)); do
		part=$out/split$SPLIT_REPLAY-$i.pcap
		run tcpdump -r "$PCAP" -w "$part" "(tcp src port 80 and (tcp[2:2] / 2) % $SPLIT_REPLAY = $i) or (not tcp src port 80 and (tcp[0:2] / 2) % $SPLIT_REPLAY = $i)" 2>/dev/null
		parts+=("$part")
	done
fi
ncpu=$(nproc)

count=()
[[ -n $LIMIT ]] && count=(-c "$LIMIT")
count_expected "${count[@]}"
say "$expected lines expected per run"

# softnet_drops prints the kernel's total of frames dropped because a CPU's
# input backlog was full (second column of /proc/net/softnet_stat, hex).
softnet_drops() {
	local total=0 _a d
	while read -r _a d _; do
		total=$((total + 16#$d))
	done </proc/net/softnet_stat
	echo "$total"
}

# cpu_ticks prints utime+stime of a process, in clock ticks.
cpu_ticks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# cpu_ns prints the CPU time of all threads of a process, in nanoseconds
# (the scheduler's runtime of each, /proc/PID/task/TID/schedstat). The
# clock ticks of /proc/PID/stat count in hundredths of a second, a twentieth
# of a capturer's CPU in a 200k run: too coarse to tell 1.1 from 1.15.
# A thread that has exited is not counted; the capturers keep theirs.
cpu_ns() {
	cat "/proc/$1"/task/*/schedstat | awk '{ n += $1 } END { printf "%d\n", n }'
}

# cpu_split prints utime and stime of a process, in clock ticks.
cpu_split() {
	awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat"
}

# switches prints the context switches of all threads of a process,
# voluntary (a thread went to sleep: each is a wake-up later) and not.
switches() {
	cat "/proc/$1"/task/*/status | awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 } END { print v + n }'
}

# settle waits until a process's CPU time stops growing (it has read what
# the ring holds), up to 20 s.
settle() {
	local last now i
	last=$(cpu_ticks "$1")
	for ((i = 0; i < 40; i++)); do
		sleep 0.5
		now=$(cpu_ticks "$1")
		[[ $now == "$last" ]] && return 0
		last=$now
	done
}

results=$out/results.txt
printf '| rate asked | capturer | achieved pps | sent | seen | lines / expected | kernel drops | backlog drops | CPU s (user+sys) | CPU s / M packets | context switches |\n|---|---|---|---|---|---|---|---|---|---|---|\n' >"$results"

for rate in "${rates[@]}"; do
	for who in "${capturers[@]}"; do
		wait_quiet
		dir=$out/$rate-$who
		mkdir -p "$dir"
		case $who in
		tcpdump) cmd=(tcpdump -i "$vr" -n -s 1560 -B 8192 -w /dev/null) sig=INT ;;
		httplog) cmd=("$out/httplog" -i "$vr" -p 80 -d "$dir" -log_every 0 "${httplog_extra[@]}") sig=TERM ;;
		httplog+*)
			variant "${who#httplog+}"
			cmd=("${vcmd[0]}" -i "$vr" -p 80 -d "$dir" -log_every 0 "${vcmd[@]:1}") sig=TERM
			;;
		httpry) cmd=(httpry -i "$vr" -o "$dir/httpry.txt") sig=INT ;;
		*)
			echo "live.sh: unknown capturer $who" >&2
			exit 2
			;;
		esac
		say "rate $rate, $who"
		printf '+ ip netns exec %s %s\n' "$rx" "${cmd[*]}" >&2
		stdout=$dir/stdout.txt
		[[ ${STDOUT_NULL:-} == 1 ]] && stdout=/dev/null
		ip netns exec "$rx" "${cmd[@]}" >"$stdout" 2>"$dir/stderr.txt" &
		pid=$!
		pids+=("$pid")
		sleep "$START_WAIT"
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "live.sh: $who did not start:" >&2
			cat "$dir/stderr.txt" >&2
			exit 1
		fi
		if [[ $rate == top ]]; then
			speed=(--topspeed)
		else
			speed=(--pps="$((rate / ${#parts[@]}))")
		fi
		limit=()
		[[ -n $LIMIT ]] && limit=(--limit="$LIMIT")
		drops0=$(softnet_drops)
		if ((${#parts[@]} == 1)); then
			pin=()
			[[ -n $REPLAY_CPU ]] && pin=(taskset -c "$REPLAY_CPU")
			run ip netns exec "$tx" "${pin[@]}" tcpreplay -i "$vt" "${speed[@]}" "${limit[@]}" "$PCAP" >"$dir/tcpreplay.txt" 2>&1
		else
			replays=()
			for i in "${!parts[@]}"; do
				run ip netns exec "$tx" taskset -c "$((i % ncpu))" tcpreplay -i "$vt" "${speed[@]}" "${parts[$i]}" >"$dir/tcpreplay-$i.txt" 2>&1 &
				replays+=("$!")
			done
			wait "${replays[@]}"
			cat "$dir"/tcpreplay-*.txt >"$dir/tcpreplay.txt"
		fi
		drops1=$(softnet_drops)
		sleep "$STOP_WAIT"
		settle "$pid"
		read -r uticks sticks < <(cpu_split "$pid")
		ns=$(cpu_ns "$pid")
		ctxsw=$(switches "$pid")
		# Per thread: tid, utime, stime (ticks), voluntary, nonvoluntary switches.
		for task in /proc/"$pid"/task/*; do
			printf '%s %s %s %s\n' "${task##*/}" "$(awk '{ sub(/^.*\) /, ""); print $12, $13 }' "$task/stat")" \
				"$(awk '/^voluntary_ctxt_switches/ { print $2 }' "$task/status")" "$(awk '/^nonvoluntary_ctxt_switches/ { print $2 }' "$task/status")"
		done >"$dir/threads.txt"
		kill -s "$sig" "$pid"
		# httpry exits with 2 after SIGINT: not a failure.
		wait "$pid" || [[ $who == httpry ]] || echo "live.sh: $who exited with $?" >&2
		grep -E 'Actual|Rated|Failed' "$dir/tcpreplay.txt" >&2 || true
		# Summed over the replays of SPLIT_REPLAY (the rate: each replay's
		# over its own run; the parts are of about the same length).
		sent=$(sed -n 's/.*Actual: \([0-9]*\) packets.*/\1/p' "$dir/tcpreplay.txt" | awk '{ n += $1 } END { print n }')
		pps=$(sed -n 's/.*Rated: .* \([0-9.]*\) pps.*/\1/p' "$dir/tcpreplay.txt" | awk '{ n += $1 } END { print n }')
		lines=- kdrops=- seen=-
		case $who in
		tcpdump)
			cat "$dir/stderr.txt" >&2
			seen=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$dir/stderr.txt")
			kdrops=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$dir/stderr.txt")
			;;
		httplog*)
			st=$(grep 'stats:' "$dir/stderr.txt" | tail -1)
			echo "$st" >&2
			seen=$(stat_field packets "$st")
			kdrops=$(stat_field kernel_drops "$st")
			lines=$(log_lines "$dir")
			;;
		httpry)
			grep -h 'packets received' "$dir/stderr.txt" "$dir/stdout.txt" >&2 || true
			seen=$(sed -n 's/^\([0-9]*\) packets received.*/\1/p' "$dir/stdout.txt" "$dir/stderr.txt" | head -1)
			kdrops=$(sed -n 's/.* \([0-9]*\) packets dropped.*/\1/p' "$dir/stdout.txt" "$dir/stderr.txt" | head -1)
			lines=$(grep -vc '^#' "$dir/httpry.txt" || true)
			;;
		esac
		lratio=-
		[[ $lines != - ]] && lratio=$(awk -v l="$lines" -v e="$expected" 'BEGIN { printf "%d / %d (%.2f %%)", l, e, (e > 0 ? 100 * l / e : 100) }')
		awk -v rate="$rate" -v who="$who" -v pps="$pps" -v sent="$sent" -v seen="$seen" -v lr="$lratio" \
			-v kd="$kdrops" -v bd="$((drops1 - drops0))" -v ns="$ns" -v ut="$uticks" -v st="$sticks" -v hz="$hz" -v cs="$ctxsw" 'BEGIN {
			cpu = ns / 1e9
			printf "| %s | %s | %.0f | %d | %s | %s | %s | %d | %.3f (%.2f+%.2f) | %.4f | %d |\n", rate, who, pps, sent, seen, lr, kd, bd, cpu, ut / hz, st / hz, cpu / (sent / 1e6), cs
		}' | tee -a "$results" >&2
	done
done

echo
say "results"
echo "$(machine_line); expected lines per run: $expected"
echo
cat "$results"
