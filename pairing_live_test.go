package main

// Pairing (-pair, SPEC section 9) checked on live traffic and on a table
// filled to its size (issue 9, items 5 and 6):
//
//   - TestLivePairNginx: curl (keep-alive, several URLs a connection), a
//     pipelining client, and wrk with and without pipelining against
//     nginx; every CR line has a time, nothing is left unanswered or
//     unmatched, and each time is at most the larger of nginx's own
//     $request_time and the time from the request's capture to nginx's
//     log, plus 2 ms (not $request_time + 1 ms: see the test).
//   - TestLivePairDelay: a server that answers after the delay named in
//     the query; the times lie in [delay, delay + 5 ms], and pipelined
//     requests are paired in order.
//   - TestPairMemory (pairing_memory_test.go): -pair_max 1000000 and a
//     capture of a million connections each with one unanswered request;
//     peak resident memory within what the start message states, and
//     under 300 MB.

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ---------------------------------------------------------------------------
// TestLivePairNginx

// TestLivePairNginx: httplog -pair -cpu 2 on the server's veth end while
// nginx answers, in turn:
//   - curl with several URLs a connection (keep-alive; IPv4 and IPv6, ports
//     80 and 8080, GET, HEAD and POST; 200, 302, 404 and 405);
//   - a client that pipelines: one request, then three or four written
//     back to back, a segment each, before it reads their responses (IPv4
//     and IPv6);
//   - wrk, 4 keep-alive connections, a request every 2 ms on each;
//   - wrk pipelining three requests a write on 2 connections, each request
//     padded to one full segment and the client's veth made to send
//     segments one by one (gso_max_segs 1): httplog sees the requests that
//     start a packet, and two requests in one segment would show as one
//     CQ line and two CR lines without a request.
//
// Every CR line has a time; at exit nothing is unanswered or unmatched.
// Each CR line is matched to nginx's record of its request (timing.log:
// the client endpoint names the connection, $connection_requests the
// request's number on it, which is the number of the CQ line and of the CR
// line among the connection's lines): the request line and status agree,
// and the time is the CR line's timestamp minus the CQ line's (to the
// millisecond the timestamps keep).
//
// The issue asks for each time to be at most nginx's own $request_time
// plus 1 ms. It is not always, and the test logs each request where it is
// not, with nginx's start and end against the capture times: nginx's
// clock starts when it reads the request, httplog's when the request
// reached the interface, so a wait for nginx to be scheduled is in
// httplog's time only; and nginx reads its clock once per turn of its
// event loop, before the turn's work, so the response leaves a little
// (or, when nginx is preempted, a lot) after the end nginx logs, and with
// both ends cut to milliseconds that alone can exceed the 1 ms. The test
// asserts what holds: the time is at most the larger of $request_time and
// the time from the request's capture to nginx's log write ($msec), plus
// 2 ms (1 ms for the three clocks cut to milliseconds, 1 ms for nginx's
// work of the turn). nginx runs at a real-time priority (where the test
// may set one), so that such delays stay rare. nginx answers in well
// under a millisecond, so a pipelined response paired with the wrong
// request of its burst would still pass here: TestLivePairDelay checks
// that order.
func TestLivePairNginx(t *testing.T) {
	tp := newTopology(t)
	wrk := tool(t, "wrk")
	ng := tp.startNginx(tp.srvNS)
	pairRealtime(t, "nginx", ng.proc.cmd.Process.Pid)
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-pair", "-cpu", "2")

	v4, v6 := tp.srv4, tp.srv6
	pairCurl(t, tp, nil, httpURL(v4, 80, "/hello.txt"), httpURL(v4, 80, "/"), httpURL(v4, 80, "/redirect"),
		httpURL(v4, 80, "/missing"), httpURL(v4, 80, "/small"), httpURL(v4, 80, "/hello.txt"))
	pairCurl(t, tp, nil, httpURL(v6, 8080, "/hello.txt"), httpURL(v6, 8080, "/api"), httpURL(v6, 8080, "/missing"))
	pairCurl(t, tp, []string{"-I"}, httpURL(v4, 8080, "/hello.txt"), httpURL(v4, 8080, "/"), httpURL(v4, 8080, "/small"))
	pairCurl(t, tp, []string{"--data-binary", "a=1"}, httpURL(v4, 80, "/api"), httpURL(v4, 80, "/hello.txt"), httpURL(v4, 80, "/api"))
	mss := pairPipeline(t, tp.cliNS, curlAddrPort(t, v4, "80"), "GET /small", "GET /hello.txt", "HEAD /hello.txt", "GET /missing", "POST /hello.txt")
	pairPipeline(t, tp.cliNS, curlAddrPort(t, v6, "8080"), "GET /small", "GET /api", "HEAD /", "GET /redirect")

	pace := tempFile(t, "pace.lua", "-- a pause between the requests of a connection, in ms\nfunction delay()\n\treturn 2\nend\n")
	pairWrk(t, tp, wrk, "-t1", "-c4", "-d2s", "-s", pace, httpURL(v4, 80, "/small"))

	tp.run("-n", tp.cliNS, "link", "set", "dev", tp.cliIf, "gso_max_segs", "1")
	pipeline := tempFile(t, "pipeline.lua", fmt.Sprintf(`-- three requests a write, each padded to one segment of %d bytes
local mss = %d
local function padded(path)
	local r = wrk.format("GET", path, {["X-Pad"] = ""})
	return wrk.format("GET", path, {["X-Pad"] = string.rep("x", mss - #r)})
end
function init(args)
	batch = padded("/small") .. padded("/hello.txt") .. padded("/api")
end
function request()
	return batch
end
function delay()
	return 5
end
`, mss, mss))
	pairWrk(t, tp, wrk, "-t1", "-c2", "-d1s", "-s", pipeline, httpURL(v4, 80, "/"))

	stderr := stopHttplog(t, d)
	ng.stop(t)
	timing := pairReadTiming(t, ng.timing)
	lines := readLogDir(t, dir)
	stats := parseStats(t, stderr)
	checkStatsAddUp(t, stderr)
	for _, k := range []string{"unanswered", "unmatched", "kernel_drops", "lines_lost"} {
		if stats[k] != 0 {
			t.Errorf("%s=%d, want 0: %s", k, stats[k], lastStatsLine(stderr))
		}
	}
	if stats["paired"] != stats["CR"] || stats["CR"] != uint64(len(timing)) {
		t.Errorf("paired=%d CR=%d, want both the %d requests nginx logged: %s", stats["paired"], stats["CR"], len(timing), lastStatsLine(stderr))
	}
	if pipelined := pairCheckNginx(t, lines, timing); pipelined < 100 {
		t.Errorf("only %d requests were sent before the response to the previous one: too little pipelining", pipelined)
	}
}

// pairWrk runs wrk in the client namespace with the arguments given and
// checks that it ends well.
func pairWrk(t *testing.T, tp *topology, wrk string, args ...string) {
	t.Helper()
	w := tp.start(t, "wrk", tp.cliNS, append([]string{wrk}, args...)...)
	if !w.wait(30 * time.Second) {
		t.Fatalf("wrk still runs after 30 s")
	}
	if w.err != nil {
		t.Fatalf("wrk %s: %v\n%s%s", strings.Join(args, " "), w.err, w.stdout.String(), w.stderr.String())
	}
	t.Logf("wrk %s:\n%s", strings.Join(args, " "), w.stdout.String())
}

// pairAccess is one line of the test nginx's timing.log (log_format
// hltime).
type pairAccess struct {
	client  string        // ADDR#PORT, as httplog writes it
	conn, n int           // $connection, $connection_requests
	rt      time.Duration // $request_time
	end     time.Time     // $msec: nginx's clock when it logged the request, after the response
	status  string
	request string // the request line
}

var pairAccessRE = regexp.MustCompile(`^(\S+) (\d+) (\d+) (\d+) (\d+)\.(\d{3}) (\d+)\.(\d{3}) (\d{3}) "(.*)"$`)

// pairReadTiming reads nginx's timing.log.
func pairReadTiming(t *testing.T, name string) []pairAccess {
	t.Helper()
	var out []pairAccess
	for _, l := range strings.Split(strings.TrimSpace(readFile(t, name)), "\n") {
		m := pairAccessRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("%s: line not of log_format hltime: %q", name, l)
		}
		a := pairAccess{client: endpoint(curlAddrPort(t, m[1], m[2])), status: m[9], request: unescapeNginx(m[10])}
		a.conn, _ = strconv.Atoi(m[3])
		a.n, _ = strconv.Atoi(m[4])
		a.rt = pairMillis(m[5], m[6])
		a.end = time.Unix(0, 0).Add(pairMillis(m[7], m[8]))
		out = append(out, a)
	}
	return out
}

// pairMillis reads nginx's SECONDS.MILLISECONDS.
func pairMillis(sec, ms string) time.Duration {
	s, _ := strconv.ParseInt(sec, 10, 64)
	m, _ := strconv.ParseInt(ms, 10, 64)
	return time.Duration(s)*time.Second + time.Duration(m)*time.Millisecond
}

// pairTime is the response time field of a CR or SR line (its last
// field): ok is false for "-" or a line without the field.
func pairTime(l logLine) (rt time.Duration, ok bool) {
	f := l.rest[strings.LastIndexByte(l.rest, ' ')+1:]
	ms, found := strings.CutSuffix(f, "ms")
	if !found {
		return 0, false
	}
	v, err := strconv.ParseFloat(ms, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return time.Duration(v*1000+0.5) * time.Microsecond, true
}

// pairLiveConn is one connection's CQ and CR lines, in capture order, with
// their positions in the log.
type pairLiveConn struct {
	cq, cr   []logLine
	cqAt     []int
	crAt     []int
	requests []pairAccess // nginx's records, for TestLivePairNginx
}

// pairLiveConns sorts CQ and CR lines by connection (the client endpoint).
func pairLiveConns(t *testing.T, lines []logLine) map[string]*pairLiveConn {
	t.Helper()
	conns := map[string]*pairLiveConn{}
	for i, l := range lines {
		client := l.client()
		c := conns[client]
		if c == nil {
			c = &pairLiveConn{}
			conns[client] = c
		}
		switch l.typ {
		case "CQ":
			c.cq, c.cqAt = append(c.cq, l), append(c.cqAt, i)
		case "CR":
			c.cr, c.crAt = append(c.cr, l), append(c.crAt, i)
		default:
			t.Errorf("unexpected %s line: %s", l.typ, l.rest)
		}
	}
	return conns
}

// pairLineTime checks the time field of the CR line r answering the CQ
// line q: present, and the difference of their timestamps, to the
// millisecond the timestamps keep.
func pairLineTime(t *testing.T, q, r logLine) (time.Duration, bool) {
	t.Helper()
	rt, ok := pairTime(r)
	if !ok {
		t.Errorf("CR line without a time: %s", r.rest)
		return 0, false
	}
	if d := r.ts.Sub(q.ts) - rt; d <= -time.Millisecond || d >= time.Millisecond {
		t.Errorf("time %v, but the lines are %v apart:\n%s %s\n%s %s", rt, r.ts.Sub(q.ts),
			q.ts.Format("15:04:05.000"), q.rest, r.ts.Format("15:04:05.000"), r.rest)
	}
	return rt, true
}

// pairCheckNginx matches each connection's CQ and CR lines, in order, to
// nginx's records of the connection's requests, numbered by
// $connection_requests, and checks each CR line's time (see
// TestLivePairNginx). It returns how many requests were captured before
// the response to the request before them (pipelined).
// It is long because it matches each response line to nginx's record and checks the bound.
func pairCheckNginx(t *testing.T, lines []logLine, timing []pairAccess) (pipelined int) {
	t.Helper()
	conns := pairLiveConns(t, lines)
	for _, a := range timing {
		c := conns[a.client]
		if c == nil {
			c = &pairLiveConn{}
			conns[a.client] = c
		}
		c.requests = append(c.requests, a)
	}
	var checked, over int
	var worst time.Duration
	for client, c := range conns {
		sort.Slice(c.requests, func(i, j int) bool { return c.requests[i].n < c.requests[j].n })
		if len(c.cq) != len(c.requests) || len(c.cr) != len(c.requests) {
			t.Errorf("connection from %s: %d CQ and %d CR lines, nginx logged %d requests", client, len(c.cq), len(c.cr), len(c.requests))
			continue
		}
		for i, a := range c.requests {
			q, r := c.cq[i], c.cr[i]
			if a.n != i+1 || a.conn != c.requests[0].conn {
				t.Errorf("connection from %s: nginx's request %d is number %d of connection %d (the first: %d): a client port used twice?", client, i+1, a.n, a.conn, c.requests[0].conn)
				break
			}
			if i > 0 && c.cqAt[i] < c.crAt[i-1] {
				pipelined++
			}
			if !strings.Contains(q.rest, " CQ "+a.request+" ") {
				t.Errorf("connection from %s, request %d: CQ line %q, nginx logged %q", client, a.n, q.rest, a.request)
			}
			if f := strings.Fields(r.rest); len(f) < 5 || f[4] != a.status {
				t.Errorf("connection from %s, request %d: CR line %q, nginx answered %s", client, a.n, r.rest, a.status)
			}
			rt, ok := pairLineTime(t, q, r)
			if !ok {
				continue
			}
			checked++
			worst = max(worst, rt-a.rt)
			// nginx's own time, $request_time + 1 ms, bounds httplog's
			// unless nginx began late: then the time from the request's
			// capture to nginx's log write ($msec) does.
			if rt > a.rt+time.Millisecond {
				over++
				t.Logf("connection from %s, request %d (%s): %v, nginx's $request_time %v; nginx began %v after the request's capture, and the response was captured %v after nginx's log time",
					client, a.n, a.request, rt, a.rt, a.end.Add(-a.rt).Sub(q.ts), r.ts.Sub(a.end))
			}
			// Both bounds are of clocks cut to milliseconds (nginx's start
			// and end, the CQ line's timestamp): 1 ms; and nginx reads its
			// clock once per turn of its event loop, before its work of
			// the turn, so the response leaves a little after the end it
			// logs: 1 ms more.
			if bound := max(a.rt, a.end.Sub(q.ts)) + 2*time.Millisecond; rt > bound {
				t.Errorf("connection from %s, request %d (%s): httplog's time %v is more than 2 ms above both nginx's $request_time %v and the time from the request's capture to nginx's log %v",
					client, a.n, a.request, rt, a.rt, a.end.Sub(q.ts))
			}
		}
	}
	t.Logf("%d connections, %d response times checked against nginx's, %d of them pipelined; the largest excess over $request_time %v; %d more than 1 ms above it",
		len(conns), checked, pipelined, worst, over)
	return pipelined
}

// pairCurl runs curl in the client namespace with several URLs, which it
// fetches one after the other on one connection (keep-alive), with the
// given options; it checks that curl made one connection only.
func pairCurl(t *testing.T, tp *topology, opts []string, urls ...string) map[string]time.Duration {
	t.Helper()
	args := []string{"-q", "-sS", "-g", "--http1.1", "--noproxy", "*", "--max-time", "10", "-w",
		`%{local_ip} %{local_port} %{num_connects} %{http_code} %{time_pretransfer} %{time_starttransfer}\n`}
	args = append(args, opts...)
	for _, u := range urls {
		args = append(args, "-o", "/dev/null", u)
	}
	out, err := tp.exec(tp.cliNS, append([]string{tool(t, "curl")}, args...)...)
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	const fields = 6
	report := strings.Fields(string(out))
	if len(report) != fields*len(urls) {
		t.Fatalf("curl %s: want %d transfers, curl reports (local address and port, connections made, status, times):\n%s", strings.Join(args, " "), len(urls), out)
	}
	ports, connects := map[string]bool{}, 0
	windows := map[string]time.Duration{}
	for i, u := range urls {
		r := report[i*fields : (i+1)*fields]
		ports[r[1]] = true
		n, _ := strconv.Atoi(r[2])
		connects += n
		// From the transfer's start, before the request went out, to the
		// response's first byte, by curl's clock: the packets httplog
		// times lie inside. (Not from time_pretransfer: on a reused
		// connection httplog's times were found longer than
		// time_starttransfer - time_pretransfer.)
		first, _ := strconv.ParseFloat(r[5], 64)
		target, _ := url.Parse(u)
		windows[r[0]+"#"+r[1]+" "+target.RequestURI()] = time.Duration(first * float64(time.Second))
	}
	if len(ports) != 1 || connects != 1 {
		t.Fatalf("curl %s: want %d transfers on one connection, curl reports (local address and port, connections made, status, times):\n%s", strings.Join(args, " "), len(urls), out)
	}
	t.Logf("curl %s: %d requests from port %s", strings.Join(opts, " "), len(urls), report[1])
	return windows
}

// pairPipeline opens a connection from namespace ns to srv, makes the
// first request and reads its response (nginx turns TCP_NODELAY on when a
// connection first waits for a request: before that, Nagle's algorithm
// could hold a response back and send it with the next in one segment),
// then writes the other requests, one write each (Go sets TCP_NODELAY:
// one segment each), before it reads their responses. Each request is
// "METHOD PATH". It returns the connection's maximum segment size.
func pairPipeline(t *testing.T, ns string, srv netip.AddrPort, reqs ...string) int {
	t.Helper()
	var c net.Conn
	err := inNetns(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", srv.String(), 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("connecting from %s to %s: %v", ns, srv, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	exchange := func(reqs ...string) {
		for _, r := range reqs {
			if _, err := fmt.Fprintf(c, "%s HTTP/1.1\r\nHost: pipeline.example.test\r\nUser-Agent: hl-pipeline/1\r\n\r\n", r); err != nil {
				t.Fatalf("pipelining to %s: %v", srv, err)
			}
		}
		for _, r := range reqs {
			method, _, _ := strings.Cut(r, " ")
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err != nil {
				t.Fatalf("pipelining to %s: the response to %s: %v", srv, r, err)
			}
		}
	}
	exchange(reqs[0])
	exchange(reqs[1:]...)
	mss := 0
	if sc, err := c.(*net.TCPConn).SyscallConn(); err == nil {
		sc.Control(func(fd uintptr) { mss, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) })
	}
	if mss < 500 {
		t.Fatalf("TCP_MAXSEG of the connection to %s: %d", srv, mss)
	}
	t.Logf("pipelined from %s to %s: %s, then %s", c.LocalAddr(), srv, reqs[0], strings.Join(reqs[1:], ", "))
	return mss
}

// ---------------------------------------------------------------------------
// TestLivePairDelay

// TestLivePairDelay: a server in the server namespace (this test binary
// run again: TestPairDelayServer, at a real-time priority where the test
// may set one) answers GET /delay?ms=N after N ms. httplog -pair on the
// server's veth end times each response from its request: in [N, N + 5 ms]
// for curl's requests (50, 250 and 1000 ms, keep-alive, IPv4 and IPv6).
// Then a client pipelines: a request for 200 ms, and when the server is
// half way through it (the server says so), two more for 50 ms each, back
// to back. The server answers in order, each after the one before, so the
// time of a pipelined response is its delay plus the time its request
// waited for the response before it; answering the 200 ms request with
// the newest request, as tshark would, gives 100 ms. At exit nothing is
// unanswered or unmatched.
func TestLivePairDelay(t *testing.T) {
	tp := newTopology(t)
	srv := pairDelayServer(t, tp)
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-pair")

	v4, v6 := tp.srv4, tp.srv6
	windows := pairCurl(t, tp, nil, httpURL(v4, 80, "/delay?ms=50"), httpURL(v4, 80, "/delay?ms=250"), httpURL(v4, 80, "/delay?ms=1000"))
	maps.Copy(windows, pairCurl(t, tp, nil, httpURL(v6, 80, "/delay?ms=1000"), httpURL(v6, 80, "/delay?ms=50"), httpURL(v6, 80, "/delay?ms=250")))
	maps.Copy(windows, pairDelayPipeline(t, tp, srv))

	stderr := stopHttplog(t, d)
	lines := readLogDir(t, dir)
	stats := parseStats(t, stderr)
	checkStatsAddUp(t, stderr)
	if stats["unanswered"] != 0 || stats["unmatched"] != 0 || stats["paired"] != 9 || stats["CR"] != 9 {
		t.Errorf("want paired=CR=9, unanswered=unmatched=0: %s", lastStatsLine(stderr))
	}
	if pipelined := pairCheckDelays(t, lines, windows); pipelined != 2 {
		t.Errorf("%d requests pipelined, want 2", pipelined)
	}
}

// pairDelayPipeline pipelines to the delay server srv: a request for
// 200 ms, and when the server is half way through it, two more for 50 ms
// each, back to back; it reads the three responses. It returns, by client
// endpoint and target, how long after sending each request its response
// had been read: the packets httplog times lie inside.
func pairDelayPipeline(t *testing.T, tp *topology, srv *proc) map[string]time.Duration {
	t.Helper()
	v4 := tp.srv4
	var c net.Conn
	err := inNetns(tp.cliNS, func() (err error) {
		c, err = net.DialTimeout("tcp", net.JoinHostPort(v4, "80"), 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	client := fmt.Sprintf("%s#%d", local.Addr().Unmap(), local.Port())
	var targets []string
	var sent []time.Time
	send := func(target string) {
		targets, sent = append(targets, target), append(sent, time.Now())
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hl-pipeline/1\r\n\r\n", target, v4); err != nil {
			t.Fatal(err)
		}
	}
	send("/delay?ms=200&half=1")
	if !srv.stdout.waitText("half\n", 5*time.Second) {
		t.Fatalf("the server did not reach half of the 200 ms request:\n%s%s", srv.stdout.String(), srv.stderr.String())
	}
	send("/delay?ms=50")
	send("/delay?ms=50")
	br := bufio.NewReader(c)
	windows := map[string]time.Duration{}
	for i := range 3 {
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			windows[client+" "+targets[i]] = time.Since(sent[i])
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			t.Fatalf("pipelined responses: %v", err)
		}
	}
	c.Close()
	return windows
}

// pairCheckDelays checks the time of each CR line of TestLivePairDelay
// against the delay its request asked for, plus, for a request sent
// before the response to the one before it, the time it waited for that
// response. It returns how many requests were pipelined.
func pairCheckDelays(t *testing.T, lines []logLine, windows map[string]time.Duration) int {
	t.Helper()
	delayRE := regexp.MustCompile(` CQ GET (/delay\?ms=(\d+)(&half=1)?)`)
	pipelined := 0
	for client, c := range pairLiveConns(t, lines) {
		if len(c.cq) != len(c.cr) {
			t.Errorf("connection from %s: %d CQ and %d CR lines", client, len(c.cq), len(c.cr))
			continue
		}
		for i, q := range c.cq {
			m := delayRE.FindStringSubmatch(q.rest)
			if m == nil {
				t.Errorf("unexpected request: %s", q.rest)
				continue
			}
			ms, _ := strconv.Atoi(m[2])
			rt, ok := pairLineTime(t, q, c.cr[i])
			if !ok {
				continue
			}
			// A request sent before the response to the one before it
			// waits for that response (the timestamps keep milliseconds,
			// cut: 1 ms either way).
			// At least the delay; at most the time the client waited
			// from sending the request to reading its response, which
			// holds both packets (1 ms for the times' precision).
			window, seen := windows[client+" "+m[1]]
			if !seen {
				t.Errorf("no client time for %s %s", client, m[1])
			}
			lo, hi := time.Duration(ms)*time.Millisecond, window+time.Millisecond
			if i > 0 && c.cqAt[i] < c.crAt[i-1] {
				pipelined++
				lo += c.cr[i-1].ts.Sub(q.ts) - time.Millisecond // it waited for the response before it
			}
			if rt < lo || rt > hi {
				t.Errorf("connection from %s, request %d (%d ms): time %v, want %v to %v: %s", client, i+1, ms, rt, lo, hi, c.cr[i].rest)
			} else {
				t.Logf("connection from %s, request %d (%d ms): %v", client, i+1, ms, rt)
			}
		}
	}
	return pipelined
}

// pairDelayServer starts TestPairDelayServer in the server namespace and
// waits until it listens.
func pairDelayServer(t *testing.T, tp *topology) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := tp.start(t, "delay server", tp.srvNS, "/usr/bin/env", pairDelayEnv+"=1", exe, "-test.run=^TestPairDelayServer$")
	if !p.stdout.waitText("listening\n", 10*time.Second) {
		t.Fatalf("the delay server did not start:\n%s%s", p.stdout.String(), p.stderr.String())
	}
	pairRealtime(t, "the delay server", p.cmd.Process.Pid)
	return p
}

// pairDelayEnv, set, makes TestPairDelayServer serve.
const pairDelayEnv = "HLTEST_DELAY_SERVER"

// TestPairDelayServer is the server of TestLivePairDelay, which runs this
// test binary again with HLTEST_DELAY_SERVER set, in its server namespace;
// otherwise it is skipped. It serves HTTP on port 80 (IPv4 and IPv6) until
// it is ended: GET /delay?ms=N answers after N ms; with half=1 it also
// writes "half" on standard output when half of N has passed.
func TestPairDelayServer(t *testing.T) {
	if os.Getenv(pairDelayEnv) == "" {
		t.Skip("the server of TestLivePairDelay, which starts it")
	}
	ln, err := net.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("listening")
	t.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if r.URL.Path != "/delay" || err != nil || ms < 0 || ms > 10000 {
			http.Error(w, "want /delay?ms=N", http.StatusBadRequest)
			return
		}
		d := time.Duration(ms) * time.Millisecond
		if r.URL.Query().Get("half") == "1" {
			time.Sleep(d / 2)
			fmt.Println("half")
			d -= d / 2
		}
		time.Sleep(d)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "slept %d ms\n", ms)
	})))
}

// pairRealtime gives every thread of process pid the real-time priority
// SCHED_FIFO 10 (threads it makes later inherit it), so that a server
// answers as soon as its request arrives although the test machine is
// busy; where the test may not, it says so and goes on.
func pairRealtime(t *testing.T, name string, pid int) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if err == nil {
			err = unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 10}, 0)
		}
	}
	if err != nil {
		t.Logf("%s keeps its normal priority (SCHED_FIFO: %v): it may answer late on a busy machine", name, err)
	}
}
