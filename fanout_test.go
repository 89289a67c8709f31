package main

// Tests of -readers: the fanout program, the configuration, the readers
// sharing one run, and (as root, in namespaces, with the helpers of
// live_test.go) the fanout group of the kernel and the binary with
// several readers.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

// fanoutWant is the fanout hash of an IP packet, computed from the words
// of fanoutHash's comment: the sum over the address words of (source word
// XOR destination word) times its key, plus for TCP (IPv4 but a later
// fragment; IPv6 with TCP as first next header) (source port XOR
// destination port) times the last key; the top 16 bits. 0 if not IP.
func fanoutWant(ip []byte, k fanoutKeys) uint32 {
	be32 := func(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
	be16 := func(b []byte) uint32 { return uint32(binary.BigEndian.Uint16(b)) }
	var sum uint32
	var tcp []byte
	switch ip[0] >> 4 {
	case 4:
		sum = (be32(ip[12:]) ^ be32(ip[16:])) * k[0]
		if ip[9] == 6 && be16(ip[6:])&0x1fff == 0 {
			tcp = ip[int(ip[0]&0x0f)*4:]
		}
	case 6:
		for i := range 4 {
			sum += (be32(ip[8+4*i:]) ^ be32(ip[24+4*i:])) * k[i]
		}
		if ip[6] == 6 {
			tcp = ip[40:]
		}
	default:
		return 0
	}
	if tcp != nil {
		sum += (be16(tcp) ^ be16(tcp[2:])) * k[4]
	}
	return sum >> 16
}

// fanoutVM runs fanoutProgram in x/net/bpf's VM on frames that begin at
// the network header, of the kernel's protocol proto.
func fanoutVM(t *testing.T, k fanoutKeys, proto uint32) func([]byte) uint32 {
	t.Helper()
	prog, err := fanoutProgram(0, bpf.LoadConstant{Dst: bpf.RegA, Val: proto}, k)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	return func(b []byte) uint32 {
		n, err := vm.Run(b)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(n)
	}
}

// TestFanoutHash: the fanout program gives a packet and its answer the
// same number, the number fanoutWant computes, and spreads connections
// over readers; with other keys, other numbers.
func TestFanoutHash(t *testing.T) {
	keys := fanoutKeys{0x9e3779b1, 0x85ebca6b, 0xc2b2ae35, 0x27d4eb2f, 0x165667b1}
	ip4, ip6 := fanoutVM(t, keys, etherIPv4), fanoutVM(t, keys, etherIPv6)
	tcp := func(sport, dport uint16) []byte { return tcpSegment(sport, dport, 20, "GET / HTTP/1.1\r\n\r\n") }
	// Each packet with the one that answers it.
	type pair struct {
		name     string
		ask, ans []byte
	}
	v4 := []pair{
		{"IPv4", ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0, tcp(40000, 80)), ipv4Packet("198.51.100.2", "192.0.2.1", 6, 20, 0, tcp(80, 40000))},
		// Options on one side only: the ports are found after them.
		{"IPv4 options", ipv4Packet("192.0.2.1", "198.51.100.2", 6, 60, 0, tcp(40001, 80)), ipv4Packet("198.51.100.2", "192.0.2.1", 6, 20, 0, tcp(80, 40001))},
		{"IPv4 UDP", ipv4Packet("192.0.2.1", "198.51.100.2", 17, 20, 0, tcp(53, 40002)), ipv4Packet("198.51.100.2", "192.0.2.1", 17, 20, 0, tcp(40002, 53))},
		{"IPv4 later fragment", ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 185, tcp(1, 2)), ipv4Packet("198.51.100.2", "192.0.2.1", 6, 20, 185, tcp(3, 4))},
	}
	// A flow label on one side only changes nothing.
	labelled := ipv6Packet("2001:db8:1::2", "2001:db8::1", 6, nil, nil, tcp(80, 40003))
	labelled[1], labelled[2], labelled[3] = 0x0a, 0xbc, 0xde
	v6 := []pair{
		{"IPv6", ipv6Packet("2001:db8::1", "2001:db8:1::2", 6, nil, nil, tcp(40000, 80)), ipv6Packet("2001:db8:1::2", "2001:db8::1", 6, nil, nil, tcp(80, 40000))},
		{"IPv6 extension header", ipv6Packet("2001:db8::1", "2001:db8:1::2", 6, [][]byte{make([]byte, 8)}, []byte{ip6DestOpts}, tcp(40000, 80)),
			ipv6Packet("2001:db8:1::2", "2001:db8::1", 6, [][]byte{make([]byte, 8)}, []byte{ip6DestOpts}, tcp(80, 40000))},
		{"IPv6 flow label one way", ipv6Packet("2001:db8::1", "2001:db8:1::2", 6, nil, nil, tcp(40003, 80)), labelled},
	}
	check := func(run func([]byte) uint32, pairs []pair) {
		t.Helper()
		for _, p := range pairs {
			a, b := run(p.ask), run(p.ans)
			if want := fanoutWant(p.ask, keys); a != want || b != a {
				t.Errorf("%s: %#x one way, %#x the other; want %#x both", p.name, a, b, want)
			}
		}
	}
	check(ip4, v4)
	check(ip6, v6)
	if got := ip4([]byte{0x20, 1, 2, 3}); got != 0 {
		t.Errorf("not IP: %d, want 0", got)
	}
	// The kernel says VLAN. Coming in with two tags, the inner one is at
	// the network header; going out with a tag the kernel put in, the IP
	// header is. Either way, each packet's number is its IP header's,
	// also when the tag's priority makes it look like IPv4 or IPv6.
	tagged := fanoutVM(t, keys, etherVLAN)
	for _, tci := range []uint16{100, 0x4000 | 100, 0x6000 | 7} {
		tag := func(etype uint16, ip []byte) []byte {
			return append(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, tci), etype), ip...)
		}
		for _, p := range append(v4[:2], v6[0]) {
			etype := uint16(etherIPv4)
			if p.ask[0]>>4 == 6 {
				etype = etherIPv6
			}
			want := fanoutWant(p.ask, keys)
			if got := tagged(tag(etype, p.ask)); got != want {
				t.Errorf("%s behind the tag %#x: %#x, want %#x", p.name, tci, got, want)
			}
			if got := tagged(p.ask); got != want {
				t.Errorf("%s with the tag in the link header: %#x, want %#x", p.name, got, want)
			}
		}
	}

	// Connections of one client address, or of many, spread evenly over
	// readers: no reader gets less than half its share.
	other := fanoutVM(t, fanoutKeys{3, 5, 7, 9, 11}, etherIPv4)
	differ := 0
	for _, readers := range []uint32{2, 3, 4, 7, 64} {
		for _, many := range []bool{false, true} {
			count := make([]int, readers)
			const conns = 64 * 200
			for i := range conns {
				client := "192.0.2.1"
				if many {
					client = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
				}
				pkt := ipv4Packet(client, "198.51.100.2", 6, 20, 0, tcp(uint16(1024+i), 443))
				h := ip4(pkt)
				count[h%readers]++
				if h != other(pkt) {
					differ++
				}
			}
			for r, n := range count {
				if n < conns/int(readers)/2 {
					t.Errorf("%d readers, many clients %v: reader %d has %d of %d connections: %v", readers, many, r, n, conns, count)
				}
			}
		}
	}
	if differ == 0 {
		t.Error("the keys change no hash")
	}
}

// TestBuildFanout: the program the kernel gets is the prefix that finds
// the IP header and fanoutHash at SKF_NET_OFF, and within its limits.
func TestBuildFanout(t *testing.T) {
	raw, err := buildFanout(newFanoutKeys())
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > maxFilter {
		t.Fatalf("%d instructions, more than the kernel takes", len(raw))
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("the program does not disassemble: %v", prog)
	}
	if prog[0] != (bpf.LoadExtension{Num: bpf.ExtProto}) {
		t.Errorf("first instruction %v, want ld #proto", prog[0])
	}
	loads := 0
	for i, ins := range prog {
		if l, ok := ins.(bpf.LoadIndirect); ok {
			loads++
			if l.Off < skfNetOff || l.Off > skfNetOff+64 {
				t.Errorf("instruction %d loads at %#x, not from the network header", i, l.Off)
			}
		}
		if _, ok := ins.(bpf.LoadAbsolute); ok {
			t.Errorf("instruction %d loads from the frame's start: %v", i, ins)
		}
	}
	if loads == 0 {
		t.Error("no load from the network header")
	}
}

// TestConfigReaders: -readers and HTTPLOG_READERS, their limits, -r, and
// -b split among readers, each ring holding at least one block.
func TestConfigReaders(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want int
	}{
		{nil, nil, 1},
		{[]string{"-readers", "4"}, nil, 4},
		{[]string{"-readers", "064"}, nil, 64},
		{nil, map[string]string{"HTTPLOG_READERS": "3"}, 3},
		{[]string{"-readers", "2"}, map[string]string{"HTTPLOG_READERS": "x"}, 2},
		// A variable gives way to -r; a file has one reader.
		{[]string{"-r", "x.pcap"}, map[string]string{"HTTPLOG_READERS": "8"}, 1},
		{[]string{"-readers", "64", "-b", "1"}, nil, 64},
	} {
		c, err := loadConfig(tt.args, envOf(tt.env), nil)
		if err != nil || c.Readers != tt.want {
			t.Errorf("%q %v: %v, %v; want %d readers", tt.args, tt.env, c, err, tt.want)
		}
	}
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-readers", "0"}, nil, `invalid value 0 for flag -readers: between 1 and 64`},
		{[]string{"-readers", "65"}, nil, `invalid value 65 for flag -readers: between 1 and 64`},
		{[]string{"-readers", "0x4"}, nil, `invalid value "0x4" for flag -readers: parse error`},
		{nil, map[string]string{"HTTPLOG_READERS": "four"}, `invalid value "four" for variable HTTPLOG_READERS (for -readers): not an integer`},
		{nil, map[string]string{"HTTPLOG_READERS": "-1"}, `invalid value -1 for variable HTTPLOG_READERS (for -readers): between 1 and 64`},
		{[]string{"-readers", "2", "-r", "x.pcap"}, nil, `flags -readers 2 and -r x.pcap conflict: a capture file is read by one reader`},
		{[]string{"-readers", "8", "-b", "1", "-s", "262144"}, nil,
			`invalid value 1 for flag -b with flag -readers 8: each reader's ring would get 128 KiB, less than one block of 260 KiB (for -s 262144)`},
		{[]string{"-s", "0"}, map[string]string{"HTTPLOG_READERS": "64", "HTTPLOG_BUFSIZE": "4"},
			`invalid value 4 for variable HTTPLOG_BUFSIZE (for -b) with variable HTTPLOG_READERS (for -readers) 64: each reader's ring would get 64 KiB, less than one block of 68 KiB (for -s 65535)`},
	} {
		_, err := loadConfig(tt.args, envOf(tt.env), nil)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q %v: error %v\nwant %s", tt.args, tt.env, err, tt.want)
		}
	}
	var out, errOut strings.Builder
	if code := run([]string{"-h"}, envOf(nil), &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "  -readers int\n    \tNumber of capture sockets") {
		t.Errorf("-h does not list -readers:\n%s", errOut.String())
	}
}

// TestRingSplit: each reader's ring is its share of -b, in whole blocks,
// and the shares add up to at most -b.
func TestRingSplit(t *testing.T) {
	for _, tt := range []struct{ snaplen, mb, readers int }{
		{1560, 8, 1}, {1560, 8, 2}, {1560, 8, 3}, {1560, 8, 64}, {1560, 1, 64}, {65535, 64, 7}, {262144, 4096, 64},
	} {
		one, err := ringFor(tt.snaplen, tt.mb, 1)
		if err != nil {
			t.Fatal(err)
		}
		g, err := ringFor(tt.snaplen, tt.mb, tt.readers)
		if err != nil {
			t.Errorf("%+v: %v", tt, err)
			continue
		}
		size := g.blockSize * g.numBlocks
		if g.frameSize != one.frameSize || g.blockSize%g.frameSize != 0 || g.blockSize > maxBlock || g.numBlocks < 1 ||
			size*tt.readers > tt.mb<<20 || size < tt.mb<<20/tt.readers*3/4 {
			t.Errorf("%+v: %+v: each ring %d bytes", tt, g, size)
		}
	}
	if g, err := ringFor(262144, 1, 8); err == nil || !strings.Contains(err.Error(), "-b 1 with -readers 8") {
		t.Errorf("ringFor(262144, 1, 8) = %+v, %v; want an error naming -b and -readers", g, err)
	}
}

// TestReportDue: of readers that find the quiet link's statistics line
// due at once, one writes it.
func TestReportDue(t *testing.T) {
	var last atomic.Int64
	start := time.Unix(1000, 0)
	last.Store(start.UnixNano())
	if reportDue(&last, start.Add(time.Second), time.Minute) {
		t.Error("due before its time")
	}
	at := start.Add(time.Minute)
	if !reportDue(&last, at, time.Minute) {
		t.Error("not due after a minute")
	}
	if reportDue(&last, at, time.Minute) {
		t.Error("due twice at once")
	}
}

// countingIdle is a quiet live source that counts the reads asked of it.
type countingIdle struct {
	idleLive
	reads atomic.Int64
}

func (s *countingIdle) next(f *frame) error { s.reads.Add(1); return errTimeout }

// TestReadersQuietLinkOneLine: on a quiet link, the readers write one
// statistics line per reportEvery between them, not one each.
func TestReadersQuietLinkOneLine(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var lines atomic.Int64
	c := readerConfig{limit: -1, reportEvery: time.Hour, report: func() { lines.Add(1) }, lastReport: new(atomic.Int64)}
	c.lastReport.Store(time.Now().Add(-2 * time.Hour).UnixNano()) // the line is due
	srcs := []*countingIdle{{}, {}, {}}
	done := startReaders(ctx, []packetSource{srcs[0], srcs[1], srcs[2]}, c, []chan *pktBatch{make(chan *pktBatch)}, make(chan *pktBatch), &registry{})
	// Each reader looks at the clock after every read that times out.
	ok := liveWaitFor(10*time.Second, func() bool {
		return srcs[0].reads.Load() > 3 && srcs[1].reads.Load() > 3 && srcs[2].reads.Load() > 3
	})
	cancel()
	if err := <-done; err != nil || !ok {
		t.Fatalf("readers: %v, reading: %v", err, ok)
	}
	if n := lines.Load(); n != 1 {
		t.Errorf("%d statistics lines from three quiet readers, want 1", n)
	}
}

// TestReadersShareLimit: -c counts the packets of all readers together.
func TestReadersShareLimit(t *testing.T) {
	frame := ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, "body")
	many := func() *fakeLive { return &fakeLive{frames: [][]byte{frame, frame, frame, frame, frame, frame}} }
	srcs := []packetSource{many(), many(), many()}
	free := make(chan *pktBatch, 4)
	for range cap(free) {
		free <- &pktBatch{}
	}
	reg := &registry{}
	q := make(chan *pktBatch, 4)
	if err := <-startReaders(context.Background(), srcs, readerConfig{limit: 7}, []chan *pktBatch{q}, free, reg); err != nil {
		t.Fatal(err)
	}
	if got := reg.read()[cPackets]; got != 7 {
		t.Errorf("-c 7 with three readers of 6 frames each: %d packets read", got)
	}
}

// TestReadersSumCounts: the statistics are every reader's counts added
// up, the kernel's drops of each socket included.
func TestReadersSumCounts(t *testing.T) {
	frame := ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, "body")
	a := &fakeLive{frames: [][]byte{frame, frame}, kernel: kernelCounts{received: 2}}
	b := &fakeLive{frames: [][]byte{frame, frame, frame}, kernel: kernelCounts{received: 900, drops: 890, freezes: 4}}
	reg := &registry{}
	if err := <-startReaders(context.Background(), []packetSource{a, b}, readerConfig{limit: -1}, []chan *pktBatch{make(chan *pktBatch, 1)}, make(chan *pktBatch, 1), reg); err != nil {
		t.Fatal(err)
	}
	var want counterValues
	want[cPackets], want[cBytes], want[cNotHTTP] = 5, uint64(5*len(frame)), 5
	want[cKernelDrops], want[cKernelFreezes], want[cLeftInRing] = 890, 4, 900-890-3
	if got := reg.read(); got != want {
		t.Errorf("summed %v\nwant   %v", got, want)
	}
}

// failingLive is a live source whose read fails.
type failingLive struct{ fakeLive }

func (s *failingLive) next(f *frame) error { return errors.New("-i eth9: the interface was removed") }

// TestReaderFailureStopsAll: when one reader fails, the others stop too,
// and the error is said once however many readers met it.
func TestReaderFailureStopsAll(t *testing.T) {
	srcs := []packetSource{&idleLive{}, &failingLive{}, &failingLive{}, &idleLive{}}
	select {
	case err := <-startReaders(context.Background(), srcs, readerConfig{limit: -1}, []chan *pktBatch{make(chan *pktBatch)}, make(chan *pktBatch), &registry{}):
		if err == nil || err.Error() != "-i eth9: the interface was removed" {
			t.Errorf("error %q, want the reader's, once", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the other readers run on after one failed")
	}
	for i, s := range srcs {
		if !(s.(interface{ isClosed() bool })).isClosed() {
			t.Errorf("source %d not closed", i)
		}
	}
}

func (s *fakeLive) isClosed() bool { return s.closed }

// TestLiveFanoutWholeConnections: the kernel gives every packet of a
// connection, both directions, to one socket of the group, and spreads
// connections over the sockets: IPv4, and IPv6 with a flow label set by
// the server only. (The kernel's own hash, PACKET_FANOUT_HASH, from Linux
// 4.7 until 6.6 and the stable kernels that took the fix, hashed such
// IPv6 packets on their addresses one way and on addresses and ports the
// other, and parted the directions of most connections; on a fixed kernel
// it passes this test too.)
func TestLiveFanoutWholeConnections(t *testing.T) {
	tp := newLiveTopology(t)
	tp.startNginx(tp.srvNS)
	if out, err := tp.exec(tp.cliNS, "sh", "-c", "echo 0 >/proc/sys/net/ipv6/auto_flowlabels"); err != nil {
		t.Fatalf("no IPv6 flow labels from the client: %v %s", err, out)
	}
	const readers = 3
	var srcs []*liveSource
	err := e2eInNetns(tp.srvNS, func() error {
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
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "GET", url: liveURL(tp.srv4, 80, fmt.Sprintf("/hello.txt?v4=%d", i))})
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "GET", url: liveURL(tp.srv6, 80, fmt.Sprintf("/hello.txt?v6=%d", i))})
	}

	type conn struct {
		readers   map[int]int // reader → packets
		ways      map[bool]bool
		labelWays map[bool]bool // directions that carried an IPv6 flow label
	}
	seen := map[string]*conn{}
	// Read every ring until each connection has been seen both ways, and
	// once more: the kernel hands a block over once its first frame is
	// 64 ms old, later on a busy machine.
	complete := func() bool {
		n := 0
		for _, c := range seen {
			if len(c.ways) == 2 {
				n++
			}
		}
		return n >= 2*conns
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
					c = &conn{readers: map[int]int{}, ways: map[bool]bool{}, labelWays: map[bool]bool{}}
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

// TestLiveFanoutGroupIDs: without the kernel picking the group id, the
// id is the first of this process's own ids that no other group holds
// with other settings.
func TestLiveFanoutGroupIDs(t *testing.T) {
	tp := newLiveTopology(t)
	err := e2eInNetns(tp.srvNS, func() error {
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
func fanoutByConn(lines []liveLine) map[string][]string {
	by := map[string][]string{}
	for _, l := range lines {
		by[e2eEndpoint(l, l.typ == "CR")] = append(by[e2eEndpoint(l, l.typ == "CR")], l.rest)
	}
	return by
}

// TestLiveFanoutSameLines: the same frames, sent into the server's veth,
// make the same lines with 1, 2, 3 and 4 readers as httplog -r makes of
// them: the same multiset, and each connection's lines in the order sent.
func TestLiveFanoutSameLines(t *testing.T) {
	tp := newLiveTopology(t)
	frames := fanoutFrames()
	local := "-local=" + fanoutServer4 + "," + fanoutServer6
	out, stderr, code := runPipeline(t, "-r", writePcap(t, layers.LinkTypeEthernet, frames, time.Now()), "-p", "80", "-d", "-", local)
	if code != 0 {
		t.Fatalf("httplog -r: exit %d\n%s", code, stderr)
	}
	var want []liveLine
	for _, text := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l, ok := liveParseLine(t, "httplog -r", text); ok {
			want = append(want, l)
		}
	}
	if len(want) != len(frames) {
		t.Fatalf("httplog -r: %d lines of %d frames", len(want), len(frames))
	}
	wantBy := fanoutByConn(want)

	for _, readers := range []int{1, 2, 3, 4} {
		dir := liveLogDir(t)
		d := startHttplog(t, tp, tp.srvNS, tp.srvIf, dir, "-readers", fmt.Sprint(readers), local)
		errs, err := e2eSend(tp.cliNS, tp.cliIf, frames)
		if err = errors.Join(append(errs, err)...); err != nil {
			t.Fatalf("sending the frames: %v", err)
		}
		// Every line is in the files (a ring block is handed over after
		// 64 ms, the writer flushes every second), before the stop.
		liveWaitFor(10*time.Second, func() bool {
			b, _ := readAll(dir)
			return strings.Count(b, "\n") >= len(want)
		})
		stderr := stopHttplog(t, d)
		checkStatsAddUp(t, stderr)
		lines := readLines(t, dir)
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

// readAll is the text of every log file of dir, in name order.
func readAll(dir string) (string, error) {
	var b strings.Builder
	ents, err := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != lockName {
			data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			b.Write(data)
		}
	}
	return b.String(), err
}

// TestLiveFanoutAny: -i any with two readers logs every request and
// response of curl to nginx, IPv4 and IPv6, once.
func TestLiveFanoutAny(t *testing.T) {
	tp := newLiveTopology(t)
	ng := tp.startNginx(tp.srvNS)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, "any", dir, "-readers", "2")
	if !strings.Contains(d.stderr.String(), "2 readers in fanout group") {
		t.Errorf("the start message does not say the readers:\n%s", d.stderr.String())
	}
	from := time.Now()
	var xs []liveExchange
	for i := range 6 {
		xs = append(xs,
			liveCurl(t, tp, tp.cliNS, liveRequest{method: "GET", url: liveURL(tp.srv4, 80, fmt.Sprintf("/hello.txt?any=%d", i)), ua: "hl-any/4"}),
			liveCurl(t, tp, tp.cliNS, liveRequest{method: "POST", url: liveURL(tp.srv6, 8080, "/api"), ua: "hl-any/6", body: fmt.Sprint(i)}))
	}
	liveFinish(t, d, ng, dir, xs, "CQ", "CR", from)
}

// TestLiveFanoutDrops: the rings of two readers overflow while httplog is
// stopped (SIGSTOP); the kernel's drops of both sockets are in the final
// statistics, and every frame sent is read, dropped, or left in a ring.
func TestLiveFanoutDrops(t *testing.T) {
	tp := newLiveTopology(t)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, tp.srvIf, dir, "-readers", "2", "-b", "1", "-local", fanoutServer4)
	pad := strings.Repeat("x", 1300)
	var frames [][]byte
	for i := range 3000 {
		client := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String()
		req := fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: drops.test\r\nX-Pad: %s\r\n\r\n", i, pad)
		frames = append(frames, ether(etherIPv4, nil, ipv4Packet(client, fanoutServer4, 6, 20, 0, tcpSegment(uint16(1024+i), 80, 20, req))))
	}
	pid := d.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	errs, err := e2eSend(tp.cliNS, tp.cliIf, frames)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err = errors.Join(append(errs, err)...); err != nil {
		t.Fatalf("sending the frames: %v", err)
	}
	stderr := stopHttplog(t, d)
	checkStatsAddUp(t, stderr)
	stats := parseStats(t, stderr)
	lines := readLines(t, dir)
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

// TestLiveFanoutPair: with -pair and three readers (for eight keep-alive
// connections: not one reader's share each), every response is paired
// with its request: both directions of a connection reach one reader, so
// its parser sees each request before its response.
func TestLiveFanoutPair(t *testing.T) {
	tp := newLiveTopology(t)
	wrk := liveTool(t, "wrk")
	ng := tp.startNginx(tp.srvNS)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, tp.srvIf, dir, "-readers", "3", "-cpu", "2", "-pair")
	script := filepath.Join(t.TempDir(), "pace.lua")
	liveWrite(t, script, "-- a pause between the requests of a connection, in ms\nfunction delay()\n\treturn 2\nend\n")
	w := tp.start("wrk", tp.cliNS, wrk, "-t1", "-c8", "-d3s", "-s", script, liveURL(tp.srv4, 80, "/small"))
	if !w.wait(30*time.Second) || w.err != nil {
		t.Fatalf("wrk: %v\n%s%s", w.err, w.stdout.String(), w.stderr.String())
	}
	access := ng.stop(t)
	// Every request nginx logged, and its response, is in the files.
	liveWaitFor(10*time.Second, func() bool {
		b, _ := readAll(dir)
		return strings.Count(b, "\n") >= 2*len(access)
	})
	stderr := stopHttplog(t, d)
	checkStatsAddUp(t, stderr)
	stats := parseStats(t, stderr)
	lines := readLines(t, dir)
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
