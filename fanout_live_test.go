package main

// Tests of -readers run as root, in network namespaces (the harness:
// harness_test.go): the fanout group of the kernel, and the binary with
// several readers.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
)

// TestLiveFanoutWholeConnections: the kernel gives every packet of a
// connection, both directions, to one socket of the group, and spreads
// connections over the sockets: IPv4, and IPv6 with a flow label set by
// the server only. (The kernel's own hash, PACKET_FANOUT_HASH, from Linux
// 4.7 until 6.6 and the stable kernels that took the fix, hashed such
// IPv6 packets on their addresses one way and on addresses and ports the
// other, and parted the directions of most connections; on a fixed kernel
// it passes this test too.)
func TestLiveFanoutWholeConnections(t *testing.T) {
	tp := newTopology(t)
	tp.startNginx(tp.srvNS)
	if out, err := tp.exec(tp.cliNS, "sh", "-c", "echo 0 >/proc/sys/net/ipv6/auto_flowlabels"); err != nil {
		t.Fatalf("no IPv6 flow labels from the client: %v %s", err, out)
	}
	const readers = 3
	var srcs []*liveSource
	err := inNetns(tp.srvNS, func() error {
		var err error
		srcs, err = openLive(liveConfig{iface: tp.srvIf, snaplen: 1560, ringMB: 8, readers: readers, ports: []uint16{80}, logf: t.Logf})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range srcs {
			s.close()
		}
	}()
	if len(srcs) != readers {
		t.Fatalf("%d sockets, want %d", len(srcs), readers)
	}
	t.Log(srcs[0].describe())
	const conns = 12
	for i := range conns {
		tp.curl(t, tp.cliNS, curlRequest{method: "GET", url: httpURL(tp.srv4, 80, fmt.Sprintf("/hello.txt?v4=%d", i))})
		tp.curl(t, tp.cliNS, curlRequest{method: "GET", url: httpURL(tp.srv6, 80, fmt.Sprintf("/hello.txt?v6=%d", i))})
	}

	seen := fanoutSeen(t, srcs, 2*conns)
	used := map[int]bool{}
	oneWayLabels := 0
	for key, c := range seen {
		if len(c.readers) != 1 {
			t.Errorf("connection %s reached %d sockets: %v", key, len(c.readers), c.readers)
		}
		if len(c.ways) != 2 {
			t.Errorf("connection %s: packets of one direction only", key)
		}
		if c.labelWays[false] && !c.labelWays[true] {
			oneWayLabels++
		}
		for r := range c.readers {
			used[r] = true
		}
	}
	if len(seen) != 2*conns || oneWayLabels != conns {
		t.Errorf("%d connections seen, %d of them with a flow label from the server only; want %d and %d", len(seen), oneWayLabels, 2*conns, conns)
		for key, c := range seen {
			t.Logf("%s: packets by reader %v, flow label client to server %v, server to client %v", key, c.readers, c.labelWays[true], c.labelWays[false])
		}
		for r, s := range srcs {
			t.Logf("reader %d: kernel counts %+v, at block %d of %d (owned %v, %d frames left), block statuses %v", r, s.kernelStats(), s.block, s.g.numBlocks, s.owned, s.left, blockStatuses(s))
		}
	}
	if len(used) < 2 {
		t.Errorf("%d connections, all on one socket of %d", len(seen), readers)
	}
}

// fanoutConn is what the sockets of a fanout group saw of a connection.
type fanoutConn struct {
	readers   map[int]int // reader → packets
	ways      map[bool]bool
	labelWays map[bool]bool // directions that carried an IPv6 flow label
}

// fanoutSeen reads every ring of srcs until conns connections have been
// seen both ways, and once more (the kernel hands a block over once its
// first frame is 64 ms old, later on a busy machine), or 10 s have
// passed; it returns what was seen of each connection, by its endpoints.
func fanoutSeen(t *testing.T, srcs []*liveSource, conns int) map[string]*fanoutConn {
	t.Helper()
	seen := map[string]*fanoutConn{}
	complete := func() bool {
		n := 0
		for _, c := range seen {
			if len(c.ways) == 2 {
				n++
			}
		}
		return n >= conns
	}
	var f frame
	var p packet
	for end, more := time.Now().Add(10*time.Second), 1; more >= 0 && time.Now().Before(end); {
		if complete() {
			more--
		}
		for r, s := range srcs {
			for {
				if err := s.next(&f); err == errTimeout {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				if decodeFrame(f.link, f.data, &p) != vTCP {
					continue
				}
				a, b := netip.AddrPortFrom(addrFrom(p.src), p.sport), netip.AddrPortFrom(addrFrom(p.dst), p.dport)
				up := p.dport == 80 // client to server
				if !up {
					a, b = b, a
				}
				key := a.String() + " " + b.String()
				c := seen[key]
				if c == nil {
					c = &fanoutConn{readers: map[int]int{}, ways: map[bool]bool{}, labelWays: map[bool]bool{}}
					seen[key] = c
				}
				c.readers[r]++
				c.ways[up] = true
				if len(p.src) == 16 && binary.BigEndian.Uint32(f.data[14:])&0xfffff != 0 {
					c.labelWays[up] = true
				}
			}
		}
	}
	return seen
}

// TestLiveFanoutGroupIDs: without the kernel picking the group id, the
// id is the first of this process's own ids that no other group holds
// with other settings.
func TestLiveFanoutGroupIDs(t *testing.T) {
	tp := newTopology(t)
	err := inNetns(tp.srvNS, func() error {
		g, _ := ringFor(1560, 1, 1)
		open := func() (*liveSource, error) {
			s := &liveSource{fd: -1, g: g}
			return s, s.prepare(0, rejectAll)
		}
		other, err := open()
		if err != nil {
			return err
		}
		defer other.close()
		// Another process's group: id 7000, of another type.
		if err := setFanout(other.fd, 7000, 1 /* PACKET_FANOUT_LB */); err != nil {
			return fmt.Errorf("a group of another type: %v", err)
		}
		s, err := open()
		if err != nil {
			return err
		}
		defer s.close()
		if id, err := joinNumbered(s.fd, 7000); err != nil || id != 7001 {
			return fmt.Errorf("joinNumbered from 7000, taken: id %d, %v; want 7001", id, err)
		}
		// And the kernel's pick is a group of its own.
		u, err := open()
		if err != nil {
			return err
		}
		defer u.close()
		id, err := joinUnique(u.fd)
		if err != nil || id == 7000 || id == 7001 {
			return fmt.Errorf("joinUnique: id %d, %v", id, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLiveFanoutInterfaceDownUp: TestLiveInterfaceDownUp with two
// readers: the interface going down and up is said once and loses
// nothing; its removal ends httplog with one message and exit code 1.
func TestLiveFanoutInterfaceDownUp(t *testing.T) {
	liveInterfaceDownUp(t, "-readers", "2")
	liveInterfaceRemoved(t, "-readers", "2")
}

// TestLiveFanoutStopDrainsRing: TestLiveStopDrainsRing with three
// readers: SIGTERM right after a request still logs it, from whichever
// ring holds it.
func TestLiveFanoutStopDrainsRing(t *testing.T) {
	liveStopDrainsRing(t, "-readers", "3")
}

// fanoutConns are the connections of fanoutFrames: IPv4 clients (some
// with IP options, some with two VLAN tags) and IPv6 clients (every other
// with a flow label from the server only) of one server.
const (
	fanoutConns   = 96
	fanoutServer4 = "198.51.100.1"
	fanoutServer6 = "2001:db8::1"
)

// fanoutFrames makes the traffic of fanoutConns connections, each with
// three requests and their responses, interleaved: every connection's
// first exchange, then every second one, and so on.
func fanoutFrames() [][]byte {
	var frames [][]byte
	for round := range 3 {
		for i := range fanoutConns {
			port := uint16(20000 + i)
			req := fmt.Sprintf("GET /c%d/r%d HTTP/1.1\r\nHost: h%d.test\r\nUser-Agent: fanout/%d\r\n\r\n", i, round, i, round)
			resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/c%d\r\n\r\n", round, i)
			if i%2 == 0 {
				client := netip.AddrFrom4([4]byte{198, 18, byte(i / 200), byte(1 + i%200)}).String()
				hl := 20
				if i%3 == 0 {
					hl = 32
				}
				var tags []uint16
				if i%4 == 0 {
					tags = []uint16{etherQinQ, etherVLAN} // the kernel takes the outer tag out
				}
				frames = append(frames,
					ether(etherIPv4, tags, ipv4Packet(client, fanoutServer4, 6, hl, 0, tcpSegment(port, 80, 20, req))),
					ether(etherIPv4, tags, ipv4Packet(fanoutServer4, client, 6, 20, 0, tcpSegment(80, port, 20, resp))))
				continue
			}
			client := fmt.Sprintf("2001:db8:1::%x", i)
			r := ipv6Packet(fanoutServer6, client, 6, nil, nil, tcpSegment(80, port, 20, resp))
			if i%4 == 1 {
				r[1], r[2], r[3] = 0x07, byte(i), 0x42 // a flow label from the server only
			}
			frames = append(frames, ether(etherIPv6, nil, ipv6Packet(client, fanoutServer6, 6, nil, nil, tcpSegment(port, 80, 20, req))), ether(etherIPv6, nil, r))
		}
	}
	return frames
}

// fanoutByConn groups lines by connection (the client's endpoint), each
// group in the order written.
func fanoutByConn(lines []logLine) map[string][]string {
	by := map[string][]string{}
	for _, l := range lines {
		by[l.client()] = append(by[l.client()], l.rest)
	}
	return by
}

// TestLiveFanoutSameLines: the same frames, sent into the server's veth,
// make the same lines with 1, 2, 3 and 4 readers as httplog -r makes of
// them: the same multiset, and each connection's lines in the order sent.
func TestLiveFanoutSameLines(t *testing.T) {
	tp := newTopology(t)
	frames := fanoutFrames()
	local := "-local=" + fanoutServer4 + "," + fanoutServer6
	out, stderr, code := runPipeline(t, "-r", writePcap(t, layers.LinkTypeEthernet, frames, time.Now()), "-p", "80", "-d", "-", local)
	if code != 0 {
		t.Fatalf("httplog -r: exit %d\n%s", code, stderr)
	}
	want := parseLogText(t, "httplog -r", out)
	if len(want) != len(frames) {
		t.Fatalf("httplog -r: %d lines of %d frames", len(want), len(frames))
	}
	wantBy := fanoutByConn(want)

	for _, readers := range []int{1, 2, 3, 4} {
		dir := newLogDir(t)
		d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-readers", fmt.Sprint(readers), local)
		errs, err := sendFrames(tp.cliNS, tp.cliIf, frames)
		if err = errors.Join(append(errs, err)...); err != nil {
			t.Fatalf("sending the frames: %v", err)
		}
		// Every line is in the files (a ring block is handed over after
		// 64 ms, the writer flushes every second), before the stop.
		waitLogLines(dir, len(want), 10*time.Second)
		stderr := stopHttplog(t, d)
		checkStatsAddUp(t, stderr)
		lines := readLogDir(t, dir)
		got := fanoutByConn(lines)
		if len(lines) != len(want) || len(got) != len(wantBy) {
			t.Errorf("-readers %d: %d lines of %d connections, want %d of %d", readers, len(lines), len(got), len(want), len(wantBy))
		}
		for conn, w := range wantBy {
			if g := got[conn]; strings.Join(g, "\n") != strings.Join(w, "\n") {
				t.Errorf("-readers %d: connection %s:\n%s\nwant\n%s", readers, conn, strings.Join(g, "\n"), strings.Join(w, "\n"))
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// TestLiveFanoutAny: -i any with two readers logs every request and
// response of curl to nginx, IPv4 and IPv6, once.
func TestLiveFanoutAny(t *testing.T) {
	tp := newTopology(t)
	ng := tp.startNginx(tp.srvNS)
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, "any", dir, "-readers", "2")
	if !strings.Contains(d.stderr.String(), "2 readers in fanout group") {
		t.Errorf("the start message does not say the readers:\n%s", d.stderr.String())
	}
	from := time.Now()
	var xs []exchange
	for i := range 6 {
		xs = append(xs,
			tp.curl(t, tp.cliNS, curlRequest{method: "GET", url: httpURL(tp.srv4, 80, fmt.Sprintf("/hello.txt?any=%d", i)), ua: "hl-any/4"}),
			tp.curl(t, tp.cliNS, curlRequest{method: "POST", url: httpURL(tp.srv6, 8080, "/api"), ua: "hl-any/6", body: fmt.Sprint(i)}))
	}
	finishRun(t, d, ng, dir, xs, "CQ", "CR", from)
}

// TestLiveFanoutDrops: the rings of two readers overflow while httplog is
// stopped (SIGSTOP); the kernel's drops of both sockets are in the final
// statistics, and every frame sent is read, dropped, or left in a ring.
func TestLiveFanoutDrops(t *testing.T) {
	tp := newTopology(t)
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-readers", "2", "-b", "1", "-local", fanoutServer4)
	frames := overflowRings(t, tp, d, "drops.test")
	stderr := stopHttplog(t, d)
	checkStatsAddUp(t, stderr)
	stats := parseStats(t, stderr)
	lines := readLogDir(t, dir)
	t.Logf("%d frames sent, %d lines; %s", len(frames), len(lines), lastStatsLine(stderr))
	// The interface's own few frames pass the filter too (IPv6 multicast
	// listener reports, with a hop-by-hop header): not HTTP.
	own := stats["not_http"]
	accounted := stats["packets"] + stats["kernel_drops"] + stats["left_in_ring"]
	if stats["kernel_drops"] == 0 || own > 16 || accounted > uint64(len(frames))+own+16 || accounted < uint64(len(frames))*9/10 {
		t.Errorf("%d frames sent: packets + kernel_drops + left_in_ring = %d: %s", len(frames), accounted, lastStatsLine(stderr))
	}
	if uint64(len(lines)) != stats["CQ"] || stats["CQ"] != stats["packets"]-own {
		t.Errorf("%d lines, want one for each packet read: %s", len(lines), lastStatsLine(stderr))
	}
}

// overflowRings sends 3,000 requests of 1.4 KB each, from 3,000 clients to
// fanoutServer4, while httplog d is stopped (SIGSTOP), so that its rings
// overflow, then lets it go on. It returns the frames sent.
func overflowRings(t *testing.T, tp *topology, d *proc, host string) [][]byte {
	t.Helper()
	pad := strings.Repeat("x", 1300)
	var frames [][]byte
	for i := range 3000 {
		client := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String()
		req := fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: %s\r\nX-Pad: %s\r\n\r\n", i, host, pad)
		frames = append(frames, ether(etherIPv4, nil, ipv4Packet(client, fanoutServer4, 6, 20, 0, tcpSegment(uint16(1024+i), 80, 20, req))))
	}
	pid := d.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	errs, err := sendFrames(tp.cliNS, tp.cliIf, frames)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err = errors.Join(append(errs, err)...); err != nil {
		t.Fatalf("sending the frames: %v", err)
	}
	return frames
}

// TestLiveFanoutPair: with -pair and three readers (for eight keep-alive
// connections: not one reader's share each), every response is paired
// with its request: both directions of a connection reach one reader, so
// its parser sees each request before its response.
func TestLiveFanoutPair(t *testing.T) {
	tp := newTopology(t)
	wrk := tool(t, "wrk")
	ng := tp.startNginx(tp.srvNS)
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-readers", "3", "-cpu", "2", "-pair")
	script := tempFile(t, "pace.lua", "-- a pause between the requests of a connection, in ms\nfunction delay()\n\treturn 2\nend\n")
	w := tp.start(t, "wrk", tp.cliNS, wrk, "-t1", "-c8", "-d3s", "-s", script, httpURL(tp.srv4, 80, "/small"))
	if !w.wait(30*time.Second) || w.err != nil {
		t.Fatalf("wrk: %v\n%s%s", w.err, w.stdout.String(), w.stderr.String())
	}
	access := ng.stop(t)
	// Every request nginx logged, and its response, is in the files.
	waitLogLines(dir, 2*len(access), 10*time.Second)
	stderr := stopHttplog(t, d)
	checkStatsAddUp(t, stderr)
	stats := parseStats(t, stderr)
	lines := readLogDir(t, dir)
	responses, timed := 0, 0
	for _, l := range lines {
		if l.typ == "CR" {
			responses++
			if strings.HasSuffix(l.rest, "ms") {
				timed++
			}
		}
	}
	t.Logf("nginx: %d requests; %d responses logged, %d with a response time; %s", len(access), responses, timed, lastStatsLine(stderr))
	if len(access) < 500 {
		t.Errorf("only %d requests: no load", len(access))
	}
	if stats["kernel_drops"] != 0 || responses != len(access) || timed != responses ||
		stats["paired"] != uint64(responses) || stats["unmatched"] != 0 || stats["unanswered"] > 8 {
		t.Errorf("%d requests, %d responses logged, %d paired: %s", len(access), responses, timed, lastStatsLine(stderr))
	}
}

// blockStatuses is the status word of every block of a ring.
func blockStatuses(s *liveSource) []uint32 {
	var st []uint32
	for b := range s.g.numBlocks {
		st = append(st, binary.NativeEndian.Uint32(s.ring[b*s.g.blockSize+blockHdrOff:]))
	}
	return st
}
