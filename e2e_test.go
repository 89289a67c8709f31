package main

// End-to-end tests of real deployments (issue #3), as root: the httplog
// binary capturing for real in network namespaces made here, beside
// Debian's nginx, curl, wrk and tcpreplay (the harness: harness_test.go).
// docs/E2E.md draws the topologies and says what each test proves. Every
// packet stays inside the namespaces made here.
//
//   - TestE2EUpstream (here): a server between a client and an upstream,
//     -i any: CQ/CR for what it serves, SQ/SR for what it asks, IPv4 and
//     IPv6.
//   - TestE2EVLAN (e2e_vlan_test.go): VLAN traffic (802.1Q sub-interfaces
//     where the kernel has them, and a VLAN trunk made with eBPF), httplog
//     on the parent device or -i any, with and without -add_vlan.
//   - TestE2EHostile (e2e_hostile_test.go, e2e_frames_test.go): the whole
//     capture corpus replayed with tcpreplay, and hand-made hostile frames
//     sent with a raw socket.
//   - TestE2ELoad, TestE2EStopUnderLoad (e2e_load_test.go): wrk against
//     nginx, every request accounted for; SIGTERM while wrk runs, every
//     request before the signal logged.

import (
	"fmt"
	"testing"
	"time"
)

// TestE2EUpstream: three hosts, client — server — upstream, each link with
// its own IPv4 and IPv6 subnet. httplog runs on the server with -i any, so
// it reads both links and lo at once. The client's requests to the server's
// nginx are CQ/CR; the server's own requests to the upstream's nginx (curl
// run on the server) are SQ/SR; requests over the server's lo are CQ/CR,
// logged once. Once with one file a day, once with -log_split.
func TestE2EUpstream(t *testing.T) {
	t.Run("single", func(t *testing.T) { e2eUpstream(t, nil, "") })
	t.Run("split", func(t *testing.T) { e2eUpstream(t, []string{"-log_split"}, "CQ", "CR", "SQ", "SR") })
}

// e2eUpstream runs httplog with flags, makes the requests and checks the
// lines, and that the log files are those of the given types.
func e2eUpstream(t *testing.T, flags []string, types ...string) {
	tp := newTopology(t)
	upNS := tp.addNamespace("up")
	srvUp := linkEnd{tp.srvNS, "hl-veth-u", fmt.Sprintf("10.201.%d.1", tp.x), "fd00:201::1"}
	up := linkEnd{upNS, "hl-veth-d", fmt.Sprintf("10.201.%d.2", tp.x), "fd00:201::2"}
	tp.addLink(srvUp, up)
	ngSrv := tp.startNginx(tp.srvNS)
	ngUp := tp.startNginx(upNS)
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, "any", dir, flags...)

	type step struct {
		ns       string // where curl runs
		r        curlRequest
		cli, srv string // addresses curl must use
	}
	v4, v6, u4, u6 := tp.srv4, tp.srv6, up.v4, up.v6
	steps := []step{
		{tp.cliNS, curlRequest{method: "GET", url: httpURL(v4, 80, "/hello.txt"), ua: "hl-client/1"}, tp.cli4, v4},
		{tp.srvNS, curlRequest{method: "GET", url: httpURL(u4, 80, "/hello.txt"), host: "upstream.test", ua: "hl-proxy/1"}, srvUp.v4, u4},
		{tp.cliNS, curlRequest{method: "POST", url: httpURL(v4, 8080, "/api"), body: "q=1", host: "www.example.test"}, tp.cli4, v4},
		{tp.srvNS, curlRequest{method: "PUT", url: httpURL(u4, 8080, "/api?id=3"), body: "put", ua: "hl-proxy/2"}, srvUp.v4, u4},
		{tp.cliNS, curlRequest{method: "GET", url: httpURL(v6, 80, "/"), ua: "hl-client/6"}, tp.cli6, v6},
		{tp.srvNS, curlRequest{method: "GET", url: httpURL(u6, 80, "/missing"), ua: "hl-proxy/6"}, srvUp.v6, u6},            // 404
		{tp.cliNS, curlRequest{method: "HEAD", url: httpURL(v6, 8080, "/hello.txt"), host: "v6.example.test"}, tp.cli6, v6}, // HEAD: the headers of a GET, no body
		{tp.srvNS, curlRequest{method: "GET", url: httpURL(u6, 8080, "/redirect"), ua: "-"}, srvUp.v6, u6},                  // 302, no User-Agent
		{tp.srvNS, curlRequest{method: "GET", url: httpURL("127.0.0.1", 8080, "/hello.txt"), ua: "hl-lo/4"}, "127.0.0.1", "127.0.0.1"},
		{tp.srvNS, curlRequest{method: "DELETE", url: httpURL("::1", 80, "/api"), ua: "hl-lo/6"}, "::1", "::1"},
	}
	from := time.Now()
	var served, made []exchange
	for _, s := range steps {
		x := tp.curl(t, s.ns, s.r)
		if x.client.Addr().String() != s.cli || x.server.Addr().String() != s.srv {
			t.Fatalf("curl %s in %s went %s → %s, want %s → %s", s.r.url, s.ns, endpoint(x.client), endpoint(x.server), s.cli, s.srv)
		}
		if s.srv == u4 || s.srv == u6 {
			made = append(made, x)
		} else {
			served = append(served, x)
		}
	}
	to := time.Now()
	stderr := stopHttplog(t, d)
	accSrv, accUp := ngSrv.stop(t), ngUp.stop(t)

	lines := readLogDir(t, dir)
	count := expectExchanges(t, lines, from, to, exchangeGroup{served, "CQ", "CR"}, exchangeGroup{made, "SQ", "SR"})
	checkFinalStats(t, stderr, count)
	checkAccessCount(t, accSrv, count, "CQ")
	checkAccessCount(t, accUp, count, "SQ")
	checkLogBytes(t, dir)
	// The files: one a day, or one per type and day, all four types here.
	checkLogFiles(t, dir, from, to, types...)
	t.Logf("%d lines: %v", len(lines), count)
}
