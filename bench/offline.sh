#!/usr/bin/env bash
# bench/offline.sh — httplog -r beside its floor, httpry and tshark, on the
# same capture, in one run.
#
# Each round runs, one after the other, every tool on $PCAP (default
# bench/out/nginx.pcap, made by bench/traffic.sh); $RUNS rounds (default 11;
# tshark, 100 times slower, only in the first $SLOW_RUNS, default 5)
# interleave the tools, so that a noisy neighbour slows all of them alike.
# Reported per tool: the median wall time (as packets/s), the median
# user+sys CPU seconds and the median maximum RSS (GNU time), and packets/s
# as a ratio to the floor and to httpry (the median of the ratios within
# each round). Then the line counts of the last
# round are compared: httplog -cpu 1 and -cpu 2, httpry and tshark should
# all find the same HTTP starts.
#
#   floor      bench/out/readfloor FILE   (bench/readfloor: pcapgo zero-copy
#              read, count packets; nothing that reads the file through
#              pcapgo can be faster)
#   mapfloor   bench/out/readfloor -map FILE   (the file mapped whole, each
#              record's header read: the floor of reading through a mapping,
#              as httplog -r reads a regular file)
#   httplog-1  httplog -r FILE -p 80 -d DIR -log_every 0 -cpu 1
#   httplog-2  httplog -r FILE -p 80 -d DIR -log_every 0 -cpu 2
#   httpry     httpry -r FILE -o DIR/httpry.txt
#   tshark     tshark -r FILE -o tcp.desegment_tcp_streams:FALSE
#              -o http.desegment_headers:FALSE -o http.desegment_body:FALSE
#              -Y 'http.request or http.response' -T fields -e frame.number
#
# Every tool writes real files under bench/out/offline/. The capture is read
# once first, so every run reads it from the page cache.
#
#   httplog+NAME  a variant: the binary and flags of $HL_NAME (bench/lib.sh),
#              with -r FILE -p 80 -d DIR -log_every 0 -cpu 1 before them
#
# Usage: bench/offline.sh   (root only if packages must be installed)
# Parameters (environment): PCAP, RUNS (11), SLOW_RUNS (5), TOOLS ("floor httplog-1
# httplog-2 httpry tshark"), HTTPLOG (./httplog; built with ./make.sh if
# missing), QUIET_LOAD, QUIET_WAIT (see bench/lib.sh).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

PCAP=${PCAP:-bench/out/nginx.pcap}
RUNS=${RUNS:-11}
SLOW_RUNS=${SLOW_RUNS:-5}
read -r -a tools <<<"${TOOLS:-floor httplog-1 httplog-2 httpry tshark}"
HTTPLOG=${HTTPLOG:-./httplog}

need_pkgs httpry tshark time:/usr/bin/time
prepare_out offline
run go build -o bench/out/readfloor ./bench/readfloor
machine_line
"$out/httplog" -v
count_expected -cpu 1
say "$packets packets, $expected HTTP starts"

# command_of prints nothing; it sets cmd to the command line of a tool
# writing into directory $2.
command_of() {
	case $1 in
	floor) cmd=(bench/out/readfloor "$PCAP") ;;
	mapfloor) cmd=(bench/out/readfloor -map "$PCAP") ;;
	httplog-1) cmd=("$out/httplog" -r "$PCAP" -p 80 -d "$2" -log_every 0 -cpu 1) ;;
	httplog-2) cmd=("$out/httplog" -r "$PCAP" -p 80 -d "$2" -log_every 0 -cpu 2) ;;
	httplog+*)
		variant "${1#httplog+}"
		cmd=("${vcmd[0]}" -r "$PCAP" -p 80 -d "$2" -log_every 0 -cpu 1 "${vcmd[@]:1}")
		;;
	httpry) cmd=(httpry -r "$PCAP" -o "$2/httpry.txt") ;;
	tshark) cmd=(tshark -r "$PCAP" -o tcp.desegment_tcp_streams:FALSE -o http.desegment_headers:FALSE
		-o http.desegment_body:FALSE -Y 'http.request or http.response' -T fields -e frame.number) ;;
	*)
		echo "offline.sh: unknown tool $1" >&2
		exit 2
		;;
	esac
}

# lines_of counts the log lines a tool wrote into directory $2.
lines_of() {
	case $1 in
	floor | mapfloor) echo - ;;
	httplog*) log_lines "$2" ;;
	httpry) grep -vc '^#' "$2/httpry.txt" ;;
	tshark) wc -l <"$2/tshark.txt" ;;
	esac
}

results=$out/runs.txt
: >"$results"
for ((r = 1; r <= RUNS; r++)); do
	wait_quiet
	for tool in "${tools[@]}"; do
		# tshark takes 100 times as long as the others: fewer rounds.
		[[ $tool == tshark ]] && ((r > SLOW_RUNS)) && continue
		dir=$out/$tool
		rm -rf "$dir"
		mkdir -p "$dir"
		command_of "$tool" "$dir"
		printf '+ [run %d/%d] %s\n' "$r" "$RUNS" "${cmd[*]}" >&2
		stdout=$dir/stdout.txt
		[[ $tool == tshark ]] && stdout=$dir/tshark.txt
		t0=$(date +%s%N)
		/usr/bin/time -o "$dir/time.txt" -f '%U %S %M' "${cmd[@]}" >"$stdout" 2>"$dir/stderr.txt"
		t1=$(date +%s%N)
		read -r user sys rss <"$dir/time.txt"
		wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
		echo "$tool $r $wall $user $sys $rss" >>"$results"
		printf '  wall %ss user %ss sys %ss maxrss %s KB\n' "$wall" "$user" "$sys" "$rss" >&2
	done
done

say "results"
echo
echo "$packets packets, $(stat -c %s "$PCAP") bytes, $expected HTTP starts; medians of $RUNS interleaved runs (tshark: $((SLOW_RUNS < RUNS ? SLOW_RUNS : RUNS)))"
echo
echo "| tool | wall s | packets/s | CPU s (user+sys) | max RSS MB | packets/s ÷ floor | packets/s ÷ httpry | lines |"
echo "|---|---|---|---|---|---|---|---|"
# The ratios are the medians of the ratios within each round (a pair run
# seconds apart), which a slow spell of the machine affects least.
for tool in "${tools[@]}"; do
	lines=$(lines_of "$tool" "$out/$tool")
	awk -v tool="$tool" -v n="$packets" -v lines="$lines" '
	function median(a, k,    i, j, t) {
		for (i = 2; i <= k; i++)
			for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
		return a[int((k + 1) / 2)]
	}
	{ wall[$1, $2] = $3 }
	$1 == tool { k++; w[k] = $3; c[k] = $4 + $5; m[k] = $6; round[k] = $2 }
	END {
		for (i = 1; i <= k; i++) {
			if ((("floor", round[i]) in wall)) rf[++nf] = wall["floor", round[i]] / w[i]
			if ((("httpry", round[i]) in wall)) rh[++nh] = wall["httpry", round[i]] / w[i]
		}
		mw = median(w, k)
		printf "| %s | %.3f | %.2f M | %.2f | %.1f | %s | %s | %s |\n", tool, mw, n / mw / 1e6, median(c, k), median(m, k) / 1024,
			nf ? sprintf("%.2f", median(rf, nf)) : "-", nh ? sprintf("%.2f", median(rh, nh)) : "-", lines
	}' "$results"
done
if [[ " ${tools[*]} " == *" httplog-1 "* && " ${tools[*]} " == *" httplog-2 "* ]]; then
	echo
	awk '{ wall[$1, $2] = $3 }
	END {
		for (r = 1; (("httplog-1", r) in wall); r++) {
			n++
			if (wall["httplog-2", r] < wall["httplog-1", r]) faster++
		}
		printf "httplog -cpu 2 was faster than -cpu 1 in %d of %d rounds\n", faster, n
	}' "$results"
fi
echo
echo "every run (tool run wall user sys maxrss_KB):"
sed 's/^/    /' "$results"
echo
say "line counts (expected $expected = CQ+CR of httplog -r)"
status=0
for tool in "${tools[@]}"; do
	[[ $tool == floor ]] && continue
	lines=$(lines_of "$tool" "$out/$tool")
	if [[ $lines == "$expected" ]]; then
		echo "$tool: $lines lines: as expected"
	else
		echo "$tool: $lines lines, expected $expected: DIFFERENT"
		status=1
	fi
done
exit "$status"
