package main

// TestE2ELoad and TestE2EStopUnderLoad (see e2e_test.go and docs/E2E.md):
// wrk against nginx while httplog captures.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2ELoad: wrk (2 threads, 32 connections, 10 s) against nginx while
// httplog -cpu 2 captures on the server's veth. Every request nginx logged
// is a CQ line and every response a CR line, or is counted as lost
// (kernel_drops, left_in_ring); a line beyond nginx's count can only be a
// retransmission the kernel counted. httplog's peak memory stays bounded.
func TestE2ELoad(t *testing.T) {
	tp, ng, d, dir, wrk := e2eStartLoad(t)
	e2eLogLoad(t)

	retrans := e2eRetrans(t, tp)
	url := httpURL(tp.srv4, 80, "/small")
	w := tp.start(t, "wrk", tp.cliNS, wrk, "-t2", "-c32", "-d10s", url)
	if !w.wait(30 * time.Second) {
		t.Fatalf("wrk still runs after 30 s")
	}
	if w.err != nil {
		t.Fatalf("wrk: %v\n%s%s", w.err, w.stdout.String(), w.stderr.String())
	}
	t.Logf("wrk -t2 -c32 -d10s %s:\n%s", url, w.stdout.String())
	retrans = e2eRetrans(t, tp) - retrans
	// No wait before the signal: httplog reads what its ring still holds
	// after SIGTERM (TestLiveStopDrainsRing), counts in left_in_ring what
	// it could not, and writes out every line before it exits.
	hwm := procVmHWM(t, d.cmd.Process.Pid)
	stderr := stopHttplog(t, d)
	access := ng.stop(t)
	stats := parseStats(t, stderr)
	checkStatsAddUp(t, stderr)

	count := e2eCountLoad(t, dir, tp.cli4, tp.srv4)
	e2eCheckLoadAccess(t, access)
	responses := e2eOK(access)
	lost := stats["kernel_drops"] + stats["left_in_ring"]
	t.Logf("nginx: %d requests, %d responses 200; httplog: CQ %d, CR %d; kernel_drops=%d left_in_ring=%d kernel_freezes=%d; TCP retransmissions %d; packets=%d",
		len(access), responses, count["CQ"], count["CR"], stats["kernel_drops"], stats["left_in_ring"], stats["kernel_freezes"], retrans, stats["packets"])
	t.Logf("httplog peak resident memory (VmHWM): %.1f MB (binary built with -race: %v)", float64(hwm)/(1<<20), raceEnabled())
	if len(access) < 1000 {
		t.Errorf("only %d requests: no load", len(access))
	}
	e2eAccount(t, "CQ", count["CQ"], len(access), lost, retrans)
	e2eAccount(t, "CR", count["CR"], responses, lost, retrans)
	for _, typ := range []string{"CQ", "CR"} {
		if stats[typ] != uint64(count[typ]) {
			t.Errorf("stats: %s=%d, the files hold %d", typ, stats[typ], count[typ])
		}
	}
	if stats["lines_lost"] != 0 || stats["write_errors"] != 0 {
		t.Errorf("lines lost on writing: %s", lastStatsLine(stderr))
	}
	if limit := uint64(200 << 20); hwm > limit {
		t.Errorf("httplog peak resident memory %d MB, want below %d MB", hwm>>20, limit>>20)
	}
}

// e2eStartLoad makes a topology, starts nginx in the server namespace
// and httplog -cpu 2 on the server's veth, writing into dir, and finds
// wrk.
func e2eStartLoad(t *testing.T) (tp *topology, ng *nginxServer, d *proc, dir, wrk string) {
	t.Helper()
	tp = newTopology(t)
	wrk = tool(t, "wrk")
	ng = tp.startNginx(tp.srvNS)
	dir = newLogDir(t)
	d = tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-cpu", "2")
	return tp, ng, d, dir, wrk
}

// e2eCountLoad reads the files of a load test (as scanLogDir does,
// without holding half a million lines) and counts the CQ lines of wrk's
// request from the client cli to the server srv and the CR lines of
// nginx's response; any other line is an error.
func e2eCountLoad(t *testing.T, dir, cli, srv string) map[string]int {
	t.Helper()
	count := map[string]int{}
	request, response := "GET /small HTTP/1.1 "+srv+" -", "HTTP/1.1 200 OK 6 text/plain"
	scanLogDir(t, dir, func(l logLine) error {
		switch {
		case l.typ == "CQ" && e2eFromClient(l.src, cli) && l.dst == srv+"#80" && l.msg == request:
		case l.typ == "CR" && l.src == srv+"#80" && e2eFromClient(l.dst, cli) && l.msg == response:
		default:
			return errors.New("unexpected line")
		}
		count[l.typ]++
		return nil
	})
	return count
}

// e2eFromClient reports whether ep is ADDR#PORT with the address addr
// and a port number (1-65535, in its shortest form).
func e2eFromClient(ep, addr string) bool {
	port, ok := strings.CutPrefix(ep, addr+"#")
	n, err := strconv.ParseUint(port, 10, 16)
	return ok && err == nil && n > 0 && strconv.FormatUint(n, 10) == port
}

// e2eCheckLoadAccess checks a sample of the access log of a load test:
// every line in the test's format, with wrk's request line.
func e2eCheckLoadAccess(t *testing.T, access []string) {
	t.Helper()
	for i := 0; i < len(access); i += 1000 {
		if a, ok := parseAccess(access[i]); !ok || a.request != "GET /small HTTP/1.1" {
			t.Errorf("access log line %q", access[i])
		}
	}
}

// e2eOK is the number of 200 responses in access log lines.
func e2eOK(access []string) int {
	n := 0
	for _, l := range access {
		if strings.Contains(l, `HTTP/1.1" 200 `) {
			n++
		}
	}
	return n
}

// e2eAccount checks one type's lines against what nginx logged: a
// shortfall must be covered by the frames httplog counted as lost, an
// excess by TCP retransmissions (each copy of a packet is logged).
func e2eAccount(t *testing.T, typ string, lines, nginx int, lost, retrans uint64) {
	t.Helper()
	switch {
	case lines < nginx && uint64(nginx-lines) > lost:
		t.Errorf("%d %s lines for %d requests nginx logged: %d missing, only %d counted as lost (kernel_drops+left_in_ring)", lines, typ, nginx, nginx-lines, lost)
	case lines > nginx && uint64(lines-nginx) > retrans:
		t.Errorf("%d %s lines for %d requests nginx logged: %d too many, and only %d TCP retransmissions", lines, typ, nginx, lines-nginx, retrans)
	case lost == 0 && retrans == 0 && lines != nginx:
		t.Errorf("%d %s lines for %d requests nginx logged, with nothing lost or retransmitted", lines, typ, nginx)
	}
}

// TestE2EStopUnderLoad: SIGTERM while wrk is still sending a moderate load
// (4 connections, a 2 ms pause between requests). httplog exits 0 within
// the stop timeout, leaves no partial line, writes no line for a request
// nginx did not see, and logs every request (and response) nginx logged
// before the signal: frames captured before SIGTERM are drained.
func TestE2EStopUnderLoad(t *testing.T) {
	tp, ng, d, dir, wrk := e2eStartLoad(t)
	script := tempFile(t, "pace.lua", "-- a pause between the requests of a connection, in ms\nfunction delay()\n\treturn 2\nend\n")

	// The load goes on across the stop however fast this machine is:
	// SIGTERM once nginx has logged 1000 requests, and wrk runs on (-d is
	// only a bound) until nginx has logged 1000 more after httplog's exit.
	w := tp.start(t, "wrk", tp.cliNS, wrk, "-t1", "-c4", "-d60s", "-s", script, httpURL(tp.srv4, 80, "/small"))
	e2eWaitRequests(t, ng, w, 1000)
	sig := time.Now()
	stderr := stopHttplog(t, d)
	exit := time.Now()
	e2eWaitRequests(t, ng, w, len(ng.accessLines(t))+1000)
	if err := w.cmd.Process.Signal(syscall.SIGINT); err != nil { // wrk ends, with its summary
		t.Fatal(err)
	}
	if !w.wait(15 * time.Second) {
		t.Fatalf("wrk still runs")
	}
	if w.err != nil {
		t.Fatalf("wrk: %v\n%s%s", w.err, w.stdout.String(), w.stderr.String())
	}
	access := ng.stop(t)
	stats := parseStats(t, stderr)
	checkStatsAddUp(t, stderr)
	s := e2eStopCounts(t, access, readLogDir(t, dir), sig, exit)
	t.Logf("SIGTERM after %v of wrk; httplog exited in %v. nginx: %d requests, %d logged before the signal, %d after httplog exited; httplog: CQ %d, CR %d; missing before the signal: CQ %d, CR %d; kernel_drops=%d left_in_ring=%d",
		sig.Sub(w.started).Round(time.Millisecond), exit.Sub(sig).Round(time.Millisecond), len(access), s.before, s.after, s.cq, s.cr, s.shortQ, s.shortR, stats["kernel_drops"], stats["left_in_ring"])
	if s.before < 100 || s.after < 100 {
		t.Errorf("the load did not go on across the stop (%d requests before, %d after): the test proves nothing", s.before, s.after)
	}
	if s.shortQ > 0 || s.shortR > 0 {
		t.Errorf("requests nginx logged before SIGTERM without a line: %d CQ, %d CR missing (kernel_drops=%d left_in_ring=%d)",
			s.shortQ, s.shortR, stats["kernel_drops"], stats["left_in_ring"])
	}
	if stats["kernel_drops"] != 0 {
		t.Errorf("kernel_drops=%d under a moderate load", stats["kernel_drops"])
	}
	if stats["lines_lost"] != 0 || stats["write_errors"] != 0 || int(stats["CQ"]) != s.cq || int(stats["CR"]) != s.cr {
		t.Errorf("statistics do not match the files (CQ %d, CR %d): %s", s.cq, s.cr, lastStatsLine(stderr))
	}
}

// e2eWaitRequests waits until nginx has logged n requests; wrk must run
// all the while.
func e2eWaitRequests(t *testing.T, ng *nginxServer, w *proc, n int) {
	t.Helper()
	if !waitFor(30*time.Second, func() bool { return w.exited() || len(ng.accessLines(t)) >= n }) {
		t.Fatalf("nginx logged %d requests in 30 s, want %d", len(ng.accessLines(t)), n)
	}
	if w.exited() {
		t.Fatalf("wrk ended early: %v\n%s%s", w.err, w.stdout.String(), w.stderr.String())
	}
}

// e2eStop is what TestE2EStopUnderLoad counts: requests nginx logged
// before the signal (with a 50 ms margin) and after httplog's exit; the
// CQ and CR lines; and the requests and responses nginx logged before the
// signal that have no line.
type e2eStop struct {
	before, after, cq, cr, shortQ, shortR int
}

// e2eStopCounts counts per connection (client port) the requests nginx
// logged and the lines httplog wrote, checking that no connection has
// more lines of a type than requests, and that no line was captured after
// httplog's exit.
func e2eStopCounts(t *testing.T, access []string, lines []logLine, sig, exit time.Time) e2eStop {
	t.Helper()
	type conn struct{ all, before, after, cq, cr int }
	conns := map[uint16]*conn{}
	get := func(p uint16) *conn {
		if conns[p] == nil {
			conns[p] = &conn{}
		}
		return conns[p]
	}
	for _, l := range access {
		a, ok := parseAccess(l)
		if !ok {
			t.Fatalf("access log line not in the test's format: %q", l)
		}
		c := get(a.client.Port())
		c.all++
		if a.at.Before(sig.Add(-50 * time.Millisecond)) {
			c.before++
		}
		if a.at.After(exit) {
			c.after++
		}
	}
	for _, l := range lines {
		client := l.client()
		port, err := strconv.ParseUint(client[strings.LastIndexByte(client, '#')+1:], 10, 16)
		if err != nil {
			t.Fatalf("line %q: %v", l.rest, err)
		}
		if c := get(uint16(port)); l.typ == "CQ" {
			c.cq++
		} else {
			c.cr++
		}
		if l.ts.After(exit) {
			t.Errorf("line captured after httplog exited: %s %s", l.ts.Format(time.StampMilli), l.rest)
		}
	}
	var s e2eStop
	for p, c := range conns {
		s.before += c.before
		s.after += c.after
		s.cq += c.cq
		s.cr += c.cr
		if c.cq > c.all || c.cr > c.all {
			t.Errorf("connection from port %d: %d CQ and %d CR lines for %d requests nginx logged", p, c.cq, c.cr, c.all)
		}
		s.shortQ += max(0, c.before-c.cq)
		s.shortR += max(0, c.before-c.cr)
	}
	return s
}

// e2eRetrans is the number of TCP segments retransmitted so far by the
// client and the server namespaces together.
func e2eRetrans(t *testing.T, tp *topology) uint64 {
	t.Helper()
	var sum uint64
	for _, ns := range []string{tp.cliNS, tp.srvNS} {
		out, err := tp.exec(ns, "cat", "/proc/net/snmp")
		if err != nil {
			t.Fatalf("/proc/net/snmp in %s: %v\n%s", ns, err, out)
		}
		var names []string
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) == 0 || f[0] != "Tcp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i, n := range names {
				if n == "RetransSegs" && i < len(f) {
					v, _ := strconv.ParseUint(f[i], 10, 64)
					sum += v
				}
			}
		}
	}
	return sum
}

// procVmHWM is a process's peak resident set size, in bytes.
func procVmHWM(t *testing.T, pid int) uint64 { return procStatusBytes(t, pid, "VmHWM") }

// procStatusBytes is a size of /proc/<pid>/status (VmHWM, VmRSS, …), in bytes.
func procStatusBytes(t *testing.T, pid int, field string) uint64 {
	t.Helper()
	for _, l := range strings.Split(readFile(t, fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s %q: %v", field, v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// e2eLogLoad notes the machine's load average, which makes load tests
// less telling.
func e2eLogLoad(t *testing.T) {
	t.Helper()
	t.Logf("load average: %s", strings.TrimSpace(readFile(t, "/proc/loadavg")))
}
