#!/usr/bin/env bash
# bench/traffic.sh — make the benchmark capture bench/out/nginx.pcap.
#
# Two network namespaces of this run (hlb-srv-PID, hlb-cli-PID) joined by a
# veth pair: 10.201.0.1/24 on the server side, 10.201.0.2/24 on the client
# side. Debian's nginx (nginx-light) serves static files of 200 B, 2 KB,
# 15 KB, 100 KB and 1 MB (generated into bench/out/www), plus a 404, a 302
# and a 405 (POST). In the client namespace, rounds of wrk with keep-alive,
# wrk with 'Connection: close' (both with bench/requests.lua: varied paths,
# Host headers and User-Agents) and a batch of curl requests run until
# tcpdump, capturing on the server's veth, has written $PACKETS packets.
#
# Segmentation offloads (TSO, GSO, GRO) are turned off on both veth ends
# with ethtool, so frames are at most MTU-sized (1514 bytes), as a real
# NIC's are; without this, veth hands tcpdump 64 KB super-frames. All the
# traffic stays inside the two namespaces; both are removed on exit.
#
# Usage (root): bench/traffic.sh
# Parameters (environment): PACKETS (1500000), OUT (bench/out/nginx.pcap),
# WRK_THREADS (2), WRK_CONNS (32), KEEPALIVE_SECONDS (1), CLOSE_SECONDS (1),
# CURL_REQUESTS (60 per round), MAX_ROUNDS (60), NGINX_WORKERS (1).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

PACKETS=${PACKETS:-1500000}
OUT=${OUT:-bench/out/nginx.pcap}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-32}
KEEPALIVE_SECONDS=${KEEPALIVE_SECONDS:-1}
CLOSE_SECONDS=${CLOSE_SECONDS:-1}
CURL_REQUESTS=${CURL_REQUESTS:-60}
MAX_ROUNDS=${MAX_ROUNDS:-60}
NGINX_WORKERS=${NGINX_WORKERS:-1}

need_root
need_pkgs nginx-light:nginx wrk tcpdump curl iproute2:ip ethtool

base=$PWD/bench/out
srv=hlb-srv-$$ cli=hlb-cli-$$
vs=hlbs$$ vc=hlbc$$
server=10.201.0.1 client=10.201.0.2
namespaces=("$srv" "$cli")
trap cleanup EXIT
trap 'exit 130' INT TERM

say "content: bench/out/www"
www=$base/www
mkdir -p "$www/static" "$www/img"
# Text files of exact sizes, so that nginx sends them as they are.
text() {
	awk -v n="$1" 'BEGIN {
		while (length(s) < n) s = s "httplog benchmark content, a line of text for a static file.\n"
		printf "%s", substr(s, 1, n)
	}'
}
text 200 >"$www/robots.txt"
{
	printf '<!DOCTYPE html>\n<html><head><title>bench</title></head><body>\n'
	text 1900
	printf '\n</body></html>\n'
} >"$www/index.html"
text 15000 >"$www/static/app.css"
text 100000 >"$www/static/app.js"
head -c 1000000 /dev/urandom >"$www/img/photo.jpg"
ls -l "$www" "$www/static" "$www/img" >&2

say "nginx configuration: bench/out/nginx/nginx.conf"
ngx=$base/nginx
mkdir -p "$ngx"
cat >"$ngx/nginx.conf" <<CONF
# Written by bench/traffic.sh.
worker_processes $NGINX_WORKERS;
pid $ngx/nginx.pid;
error_log $ngx/error.log warn;
events { worker_connections 4096; }
http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	access_log off;
	sendfile on;
	keepalive_requests 1000000;
	client_body_temp_path $ngx/body;
	proxy_temp_path $ngx/proxy;
	fastcgi_temp_path $ngx/fastcgi;
	uwsgi_temp_path $ngx/uwsgi;
	scgi_temp_path $ngx/scgi;
	server {
		listen $server:80 default_server;
		root $www;
		location = /old { return 302 /index.html; }
	}
}
CONF

say "namespaces $srv (server $server on $vs) and $cli (client $client on $vc)"
run ip netns add "$srv"
run ip netns add "$cli"
run ip link add "$vs" netns "$srv" type veth peer name "$vc" netns "$cli"
run ip -n "$srv" addr add "$server/24" dev "$vs"
run ip -n "$cli" addr add "$client/24" dev "$vc"
for ns in "$srv" "$cli"; do
	run ip -n "$ns" link set lo up
done
run ip -n "$srv" link set "$vs" up
run ip -n "$cli" link set "$vc" up
# Many short connections: reuse the client's TIME_WAIT ports.
run ip netns exec "$cli" sysctl -q -w net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range='1024 65000'
say "offloads off on both veth ends (frames <= MTU, like a real NIC's)"
run ip netns exec "$srv" ethtool -K "$vs" tso off gso off gro off
run ip netns exec "$cli" ethtool -K "$vc" tso off gso off gro off
ip netns exec "$srv" ethtool -k "$vs" | grep -E '^(tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload):' >&2

say "nginx in $srv"
ip netns exec "$srv" nginx -e "$ngx/error.log" -c "$ngx/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 50); do
	ip netns exec "$cli" curl -s -o /dev/null "http://$server/robots.txt" && break
	sleep 0.1
done
run ip netns exec "$cli" curl -sS -o /dev/null -w '%{http_code} %{size_download} bytes\n' "http://$server/img/photo.jpg"

say "tcpdump on $vs until $PACKETS packets: $OUT"
rm -f "$OUT"
tlog=$base/traffic-tcpdump.txt
ip netns exec "$srv" tcpdump -i "$vs" -n -s 1560 -B 65536 -Z root -c "$PACKETS" -w "$OUT" 2>"$tlog" &
tcpdump_pid=$!
pids+=("$tcpdump_pid")
sleep 1

alive() { kill -0 "$tcpdump_pid" 2>/dev/null; }

# client runs a command in the client namespace in the background and
# waits for it, so that the exit trap can stop it by its pid.
client() {
	printf '+ ip netns exec %s %s\n' "$cli" "$*" >&2
	ip netns exec "$cli" "$@" &
	pids+=($!)
	wait $! || echo "traffic.sh: $1 exited with $?" >&2
}

curls() {
	local i ua host url
	local uas=("curl/7.88.1" "Mozilla/5.0 (compatible; bench-curl)" "Wget/1.21.3" "")
	local hosts=("www.example.com" "api.example.com" "$server")
	local urls=("/robots.txt" "/index.html" "/static/app.css" "/old" "/nothing-here" "/index.html?id=42&x=%20y")
	for ((i = 0; i < CURL_REQUESTS; i++)); do
		ua=${uas[i % ${#uas[@]}]}
		host=${hosts[i % ${#hosts[@]}]}
		url=http://$server${urls[i % ${#urls[@]}]}
		case $((i % 5)) in
		0) ip netns exec "$cli" curl -s -o /dev/null -A "$ua" -H "Host: $host" "$url" ;;
		1) ip netns exec "$cli" curl -s -o /dev/null --http1.0 -A "$ua" -H "Host: $host" "$url" ;;
		2) ip netns exec "$cli" curl -s -o /dev/null -I -A "$ua" "$url" ;;
		3) ip netns exec "$cli" curl -s -o /dev/null -X OPTIONS -A "$ua" "$url" ;;
		4) ip netns exec "$cli" curl -s -o /dev/null -d 'a=1&b=2' -A "$ua" "$url" "http://$server/index.html" ;;
		esac
	done
}

round=0
while alive && ((round < MAX_ROUNDS)); do
	round=$((round + 1))
	say "round $round: wrk keep-alive ${KEEPALIVE_SECONDS}s, wrk Connection: close ${CLOSE_SECONDS}s, $CURL_REQUESTS curl requests"
	client wrk -t "$WRK_THREADS" -c "$WRK_CONNS" -d "${KEEPALIVE_SECONDS}s" -s bench/requests.lua "http://$server/"
	alive || break
	client wrk -t "$WRK_THREADS" -c "$WRK_CONNS" -d "${CLOSE_SECONDS}s" -H 'Connection: close' -s bench/requests.lua "http://$server/"
	alive || break
	curls
done
if alive; then
	say "MAX_ROUNDS reached before $PACKETS packets: stopping tcpdump"
	kill -INT "$tcpdump_pid"
fi
wait "$tcpdump_pid" || true
cat "$tlog" >&2

say "checking the capture with httplog"
[[ -x ./httplog ]] || run ./make.sh
check=$base/traffic-check
rm -rf "$check"
stats=$(./httplog -r "$OUT" -p 80 -d "$check" -log_every 0 2>&1 | grep 'stats:')
echo "$stats"
echo "$stats" | awk '{
	for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	starts = v["CQ"] + v["CR"]
	printf "capture: %d packets, %d HTTP starts (CQ+CR): 1 in %.1f packets, %.0f bytes/packet\n", v["packets"], starts, v["packets"] / starts, v["bytes"] / v["packets"]
}'
ls -l "$OUT"
