package main

// Tests of -readers: the fanout program, the configuration, the readers
// sharing one run (fanout_live_test.go has those run as root, in
// namespaces).

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
// It is long because it is a table of frames run through the program and the reference.
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
	// Without -b each reader has a ring of 8 MB; a -b given, as a flag or
	// a variable, is the total; an empty variable is not given.
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want int
	}{
		{nil, nil, 8},
		{[]string{"-readers", "2"}, nil, 16},
		{nil, map[string]string{"HTTPLOG_READERS": "64"}, 512},
		{[]string{"-readers", "2"}, map[string]string{"HTTPLOG_BUFSIZE": ""}, 16},
		{[]string{"-readers", "2", "-b", "8"}, nil, 8},
		{[]string{"-readers", "4"}, map[string]string{"HTTPLOG_BUFSIZE": "8"}, 8},
		{[]string{"-r", "x.pcap"}, map[string]string{"HTTPLOG_READERS": "8"}, 8},
	} {
		c, err := loadConfig(tt.args, envOf(tt.env), nil)
		if err != nil || c.BufferMB != tt.want {
			t.Errorf("%q %v: %v, %v; want -b %d", tt.args, tt.env, c, err, tt.want)
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
	if code := run([]string{"-h"}, envOf(nil), &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "  -readers int\n    \tNumber of capture sockets") ||
		!strings.Contains(errOut.String(), "(without -b: 8 MB each)") {
		t.Errorf("-h does not list -readers:\n%s", errOut.String())
	}
}

// TestRingSplit: each reader's ring is its share of -b, in whole blocks,
// and the shares add up to at most -b.
func TestRingSplit(t *testing.T) {
	for _, tt := range []struct{ snaplen, mb, readers int }{
		{1560, 8, 1}, {1560, 8, 2}, {1560, 16, 2}, {1560, 8, 3}, {1560, 8, 64}, {1560, 1, 64}, {65535, 64, 7}, {262144, 4096, 64},
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
		// A reader's blocks fill as fast as one reader's: a Nth of the size.
		if g.blockSize > max(g.frameSize, one.blockSize/tt.readers) || g.blockSize < one.blockSize/tt.readers-g.frameSize && g.numBlocks > minBlocks {
			t.Errorf("%+v: blocks of %d bytes, one reader's %d", tt, g.blockSize, one.blockSize)
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
	ok := waitFor(10*time.Second, func() bool {
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
