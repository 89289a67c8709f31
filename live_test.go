package main

// Live tests, as root: two network namespaces joined by a veth pair,
// Debian's nginx in the server one, curl in the client one, and the
// httplog binary capturing for real with AF_PACKET on one end (the
// harness: harness_test.go).

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// liveRun is one run of a live test: httplog in namespace ns on iface
// with flags, curl's requests from curlNS, and the types their lines must
// have.
type liveRun struct {
	ns, iface         string
	flags             []string
	curlNS            string
	reqs              []curlRequest
	reqType, respType string
	each              func(i int, x exchange) // more checks of each exchange, if set
}

// check starts nginx in the server namespace and httplog, makes the
// requests, and checks with finishRun that each makes its two lines
// exactly. It returns the log directory and when the requests began.
func (r liveRun) check(t *testing.T, tp *topology) (dir string, from time.Time) {
	t.Helper()
	ng := tp.startNginx(tp.srvNS)
	dir = newLogDir(t)
	d := tp.startHttplog(t, r.ns, r.iface, dir, r.flags...)
	from = time.Now()
	var xs []exchange
	for i, q := range r.reqs {
		xs = append(xs, tp.curl(t, r.curlNS, q))
		if r.each != nil {
			r.each(i, xs[i])
		}
	}
	finishRun(t, d, ng, dir, xs, r.reqType, r.respType, from)
	return dir, from
}

// TestLiveNginxCurl: httplog on the server's veth end logs, for curl's
// requests to nginx (every method, ports 80 and 8080, IPv4 and IPv6), one
// CQ line per request and one CR line per response, exactly as sent, in
// one file a day.
func TestLiveNginxCurl(t *testing.T) {
	tp := newTopology(t)
	v4, v6 := tp.srv4, tp.srv6
	wantStatus := []string{"200", "200", "200", "200", "200", "200", "200", "200", "302", "405", "200", "404"}
	dir, from := liveRun{ns: tp.srvNS, iface: tp.srvIf, curlNS: tp.cliNS, reqType: "CQ", respType: "CR", reqs: []curlRequest{
		{method: "GET", url: httpURL(v4, 80, "/hello.txt"), host: "www.example.test", ua: "hl-agent/1"},
		{method: "GET", url: httpURL(v4, 8080, "/"), ua: "Mozilla/5.0 (X11; Linux x86_64) hl-test/2.0"},
		{method: "POST", url: httpURL(v4, 80, "/api"), ua: "hl-post/1", body: "a=1&b=2"},
		{method: "HEAD", url: httpURL(v4, 80, "/hello.txt"), ua: "hl-head/1"},
		{method: "PUT", url: httpURL(v4, 8080, "/api?id=7"), ua: "hl-put/1", body: "put body"},
		{method: "DELETE", url: httpURL(v4, 80, "/api?id=7"), ua: "hl-delete/1"},
		{method: "OPTIONS", url: httpURL(v4, 80, "/api"), ua: "hl-options/1"},
		{method: "PATCH", url: httpURL(v4, 8080, "/api"), ua: "hl-patch/1", body: `{"x":1}`, header: []string{"Content-Type: application/json"}},
		{method: "GET", url: httpURL(v4, 80, "/redirect")},            // 302, curl's own User-Agent
		{method: "POST", url: httpURL(v4, 80, "/hello.txt"), ua: "-"}, // no User-Agent at all; nginx: 405
		{method: "GET", url: httpURL(v6, 80, "/hello.txt"), ua: "hl-v6/1"},
		{method: "GET", url: httpURL(v6, 80, "/missing"), host: "v6.example.test"}, // 404
	}, each: func(i int, x exchange) {
		// The endpoints curl reports are the topology's (so the expected
		// lines hold the RFC 5952 text of fd00:200::1, not curl's).
		srv, cli := tp.srv4, tp.cli4
		if strings.Contains(x.req.url, "[") {
			srv, cli = tp.srv6, tp.cli6
		}
		if x.server.Addr().String() != srv || x.client.Addr().String() != cli {
			t.Fatalf("curl %s went %s → %s, want %s → %s", x.req.url, endpoint(x.client), endpoint(x.server), cli, srv)
		}
		// What nginx answered is what the CR line must say; check that
		// the configuration did what it should, so the test covers it.
		if f := strings.Fields(x.status); len(f) < 2 || f[0] != "HTTP/1.1" || f[1] != wantStatus[i] {
			t.Errorf("%s %s: nginx answered %q, want status %s", x.req.method, x.req.url, x.status, wantStatus[i])
		}
	}}.check(t, tp)
	checkLogFiles(t, dir, from, time.Now(), "") // day files only: http-YYYYMMDD.log
}

// TestLiveSplitFiles: with -log_split, CQ lines go to http-CQ-YYYYMMDD.log
// and CR lines to http-CR-YYYYMMDD.log, and no other file is made.
func TestLiveSplitFiles(t *testing.T) {
	tp := newTopology(t)
	dir, from := liveRun{ns: tp.srvNS, iface: tp.srvIf, flags: []string{"-log_split"}, curlNS: tp.cliNS, reqType: "CQ", respType: "CR", reqs: []curlRequest{
		{method: "GET", url: httpURL(tp.srv4, 80, "/hello.txt"), ua: "hl-split/1"},
		{method: "POST", url: httpURL(tp.srv4, 8080, "/api"), body: "x=1"},
		{method: "GET", url: httpURL(tp.srv6, 80, "/redirect"), ua: "hl-split/6"},
	}}.check(t, tp)
	checkLogFiles(t, dir, from, time.Now(), "CQ", "CR")
}

// TestLiveSQSR: httplog on the client's veth end sees the client's own
// requests to a remote server as SQ and the server's responses as SR.
func TestLiveSQSR(t *testing.T) {
	tp := newTopology(t)
	liveRun{ns: tp.cliNS, iface: tp.cliIf, curlNS: tp.cliNS, reqType: "SQ", respType: "SR", reqs: []curlRequest{
		{method: "GET", url: httpURL(tp.srv4, 80, "/hello.txt"), ua: "hl-sq/1"},
		{method: "PUT", url: httpURL(tp.srv4, 8080, "/api"), body: "v"},
		{method: "HEAD", url: httpURL(tp.srv6, 80, "/"), host: "sq.example.test"},
	}}.check(t, tp)
}

// TestLiveLoopbackOnce: on lo the kernel shows every frame to a packet
// socket twice (going out and coming in); httplog logs each request and
// each response once.
func TestLiveLoopbackOnce(t *testing.T) {
	tp := newTopology(t)
	liveRun{ns: tp.srvNS, iface: "lo", curlNS: tp.srvNS, reqType: "CQ", respType: "CR", reqs: []curlRequest{
		{method: "GET", url: httpURL("127.0.0.1", 80, "/hello.txt"), ua: "hl-lo/1"},
		{method: "POST", url: httpURL("127.0.0.1", 8080, "/api"), body: "lo"},
		{method: "GET", url: httpURL("::1", 80, "/redirect"), ua: "hl-lo/6"},
	}}.check(t, tp)
}

// TestLiveLongPortList: with as many -p ports as the kernel filter holds
// on one interface (80, 2013 others, 8080), the filter the kernel runs
// passes requests and responses of the first and the last port, IPv4 and
// IPv6. (Jumps of more than 255 instructions once went astray: with 128
// ports, no response passed.)
func TestLiveLongPortList(t *testing.T) {
	ports := []string{"80", "8080"}
	for p := 100; len(ports) < 2015; p += 2 {
		ports = append(ports, strconv.Itoa(p))
	}
	tp := newTopology(t)
	liveRun{ns: tp.srvNS, iface: tp.srvIf, flags: []string{"-p", strings.Join(ports, ",")}, curlNS: tp.cliNS,
		reqType: "CQ", respType: "CR", reqs: portRequests(tp.srvEnd(), "hl-ports")}.check(t, tp)
}

// TestLiveStopDrainsRing: SIGTERM right after a request still logs it. The
// kernel hands a TPACKET_V3 ring block over only when it is full or its
// block timeout has passed, so the last frames before the signal may still
// be in the kernel's hands when it arrives; httplog must read them before
// it exits. The request is sent at several offsets within the reader's
// 100 ms poll period, since only some offsets expose a reader that stops at
// its first poll timeout after the signal.
func TestLiveStopDrainsRing(t *testing.T) {
	liveStopDrainsRing(t)
}

// liveStopDrainsRing is TestLiveStopDrainsRing with more httplog flags.
func liveStopDrainsRing(t *testing.T, extra ...string) {
	tp := newTopology(t)
	ng := tp.startNginx(tp.srvNS)
	const rounds = 8
	for i := 0; i < rounds; i++ {
		dir := newLogDir(t)
		d := tp.startHttplog(t, tp.srvNS, "lo", dir, extra...)
		// Not a wait for anything: the offset of this round's request
		// within the poll period.
		offset := time.Duration(i) * 100 * time.Millisecond / rounds
		time.Sleep(offset)
		from := time.Now()
		x := tp.curl(t, tp.srvNS, curlRequest{method: "GET", url: httpURL("127.0.0.1", 80, "/hello.txt"), ua: fmt.Sprintf("hl-drain/%d", i)})
		stderr := stopHttplog(t, d) // at once: no pause for the ring
		count := expectExchanges(t, readLogDir(t, dir), from, time.Now(), exchangeGroup{[]exchange{x}, "CQ", "CR"})
		checkFinalStats(t, stderr, count)
		if t.Failed() {
			t.Fatalf("round %d (request %v after the start): lines captured before SIGTERM are missing", i, offset)
		}
	}
	checkAccessCount(t, ng.stop(t), map[string]int{"CQ": rounds}, "CQ")
}

// TestLiveInterfaceDownUp: the captured interface going down and up again
// does not stop httplog (it did while gopacket's poll(2) waited for the
// ring: the socket's error ended the capture); it says so, and the lines
// of requests before and after are all there.
func TestLiveInterfaceDownUp(t *testing.T) {
	liveInterfaceDownUp(t)
}

// liveInterfaceDownUp is TestLiveInterfaceDownUp with more httplog flags.
func liveInterfaceDownUp(t *testing.T, extra ...string) {
	tp := newTopology(t)
	ng := tp.startNginx(tp.srvNS)
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, extra...)

	from := time.Now()
	xs := []exchange{tp.curl(t, tp.cliNS, curlRequest{method: "GET", url: httpURL(tp.srv4, 80, "/hello.txt"), ua: "hl-before/1"})}
	tp.flap(t, d)
	// IPv4 only after the flap: the IPv6 addresses went with the link.
	xs = append(xs, tp.curl(t, tp.cliNS, curlRequest{method: "POST", url: httpURL(tp.srv4, 8080, "/api"), ua: "hl-after/1", body: "up"}))
	if !d.stderr.waitText("the interface is up again", 5*time.Second) {
		t.Errorf("no message about %s being up again; stderr:\n%s", tp.srvIf, d.stderr.String())
	}
	if d.exited() {
		t.Fatalf("httplog exited when %s went down and up: %v; stderr:\n%s", tp.srvIf, d.err, d.stderr.String())
	}
	finishRun(t, d, ng, dir, xs, "CQ", "CR", from)
	for _, msg := range []string{"the interface went down", "the interface is up again"} {
		if n := strings.Count(d.stderr.String(), msg); n != 1 {
			t.Errorf("%q said %d times, want once; stderr:\n%s", msg, n, d.stderr.String())
		}
	}
}

// TestLiveInterfaceRemoved: an interface that is removed ends httplog
// with exit code 1 and a message naming it, once.
func TestLiveInterfaceRemoved(t *testing.T) {
	liveInterfaceRemoved(t)
}

// liveInterfaceRemoved is TestLiveInterfaceRemoved with more httplog
// flags.
func liveInterfaceRemoved(t *testing.T, extra ...string) {
	tp := newTopology(t)
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, newLogDir(t), extra...)
	tp.run("-n", tp.srvNS, "link", "del", tp.srvIf) // and with it its veth peer
	if !d.wait(5 * time.Second) {
		t.Fatalf("httplog still runs 5 s after %s was removed; stderr:\n%s", tp.srvIf, d.stderr.String())
	}
	want := "stopped: -i " + tp.srvIf + ": the interface was removed"
	if d.exitCode() != 1 || !d.stderr.contains(want) || strings.Count(d.stderr.String(), "the interface was removed") != 1 {
		t.Errorf("after removing %s: exit %v, stderr:\n%s\nwant exit code 1 and %q", tp.srvIf, d.err, d.stderr.String(), want)
	}
}
