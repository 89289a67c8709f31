package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// TestPortFilter runs the kernel filter in x/net/bpf's VM on frames that
// must pass and frames that must not.
// It is long because it is a table of frames.
func TestPortFilter(t *testing.T) {
	req := tcpSegment(40000, 80, 20, getReq)
	v4 := ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0, req)
	v4opts := ipv4Packet("192.0.2.1", "198.51.100.2", 6, 36, 0, req)
	v4resp := ipv4Packet("198.51.100.2", "192.0.2.1", 6, 20, 0, tcpSegment(80, 40000, 20, "HTTP/1.1 200 OK\r\n"))
	v4other := ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0, tcpSegment(40000, 443, 20, "x"))
	v4udp := ipv4Packet("192.0.2.1", "198.51.100.2", 17, 20, 0, req)
	v4later := ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0x2000|185, req)
	v4first := ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0x2000, req)
	v6 := ipv6Packet("2001:db8::1", "2001:db8::2", 6, nil, nil, req)
	v6other := ipv6Packet("2001:db8::1", "2001:db8::2", 6, nil, nil, tcpSegment(40000, 443, 20, "x"))
	v6udp := ipv6Packet("2001:db8::1", "2001:db8::2", 17, nil, nil, req)
	v6hbh := ipv6Packet("2001:db8::1", "2001:db8::2", 6, [][]byte{make([]byte, 8)}, []byte{ip6HopByHop}, req)
	port8080 := ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0, tcpSegment(40000, 8080, 20, getReq))

	tests := []struct {
		name  string
		link  int
		ports []uint16
		frame []byte
		pass  bool
	}{
		{"ipv4 to port", linkEthernet, []uint16{80}, ether(etherIPv4, nil, v4), true},
		{"ipv4 with options", linkEthernet, []uint16{80}, ether(etherIPv4, nil, v4opts), true},
		{"ipv4 from port", linkEthernet, []uint16{80}, ether(etherIPv4, nil, v4resp), true},
		{"ipv4 other port", linkEthernet, []uint16{80}, ether(etherIPv4, nil, v4other), false},
		{"ipv4 udp", linkEthernet, []uint16{80}, ether(etherIPv4, nil, v4udp), false},
		{"ipv4 later fragment", linkEthernet, []uint16{80}, ether(etherIPv4, nil, v4later), false},
		{"ipv4 first fragment", linkEthernet, []uint16{80}, ether(etherIPv4, nil, v4first), true},
		{"second port of a list", linkEthernet, []uint16{80, 8080}, ether(etherIPv4, nil, port8080), true},
		{"not in the list", linkEthernet, []uint16{80, 8081}, ether(etherIPv4, nil, port8080), false},
		{"any port", linkEthernet, nil, ether(etherIPv4, nil, v4other), true},
		{"any port, still not udp", linkEthernet, nil, ether(etherIPv4, nil, v4udp), false},
		{"ipv6 to port", linkEthernet, []uint16{80}, ether(etherIPv6, nil, v6), true},
		{"ipv6 other port", linkEthernet, []uint16{80}, ether(etherIPv6, nil, v6other), false},
		{"ipv6 udp", linkEthernet, []uint16{80}, ether(etherIPv6, nil, v6udp), false},
		{"ipv6 extension header to user space", linkEthernet, []uint16{80}, ether(etherIPv6, nil, v6hbh), true},
		{"802.1Q", linkEthernet, []uint16{80}, ether(etherIPv4, []uint16{etherVLAN}, v4), true},
		{"802.1Q other port", linkEthernet, []uint16{80}, ether(etherIPv4, []uint16{etherVLAN}, v4other), false},
		{"QinQ ipv6", linkEthernet, []uint16{80}, ether(etherIPv6, []uint16{etherQinQ, etherVLAN}, v6), true},
		{"three tags go to user space", linkEthernet, []uint16{80}, ether(etherIPv4, []uint16{etherVLAN, etherQinQ, etherVLAN}, v4), true},
		{"0x9100 tag", linkEthernet, []uint16{80}, ether(etherIPv4, []uint16{etherQinQv1}, v4), true},
		{"arp", linkEthernet, nil, ether(0x0806, nil, make([]byte, 28)), false},
		{"raw ipv4", linkRaw, []uint16{80}, v4, true},
		{"raw ipv4 other port", linkRaw, []uint16{80}, v4other, false},
		{"raw ipv6", linkRaw, []uint16{80}, v6, true},
		{"raw garbage", linkRaw, nil, []byte{0x10, 0, 0, 0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm, err := bpf.NewVM(mustPortFilter(t, tt.link, tt.ports, 1560))
			if err != nil {
				t.Fatal(err)
			}
			n, err := vm.Run(tt.frame)
			if err != nil {
				t.Fatal(err)
			}
			if (n > 0) != tt.pass {
				t.Errorf("filter kept %d bytes, want pass=%v", n, tt.pass)
			}
			if tt.pass && n != 1560 {
				t.Errorf("filter kept %d bytes, want the snap length", n)
			}
		})
	}
}

// TestBuildFilter checks the assembled programs: a prefix that drops the
// outgoing copy of looped-back frames, and for "any" a dispatch on the
// device type to the Ethernet or the raw IP program (these use kernel
// extensions the VM lacks, and are run live in the end-to-end tests).
func TestBuildFilter(t *testing.T) {
	eth, _ := bpf.Assemble(mustPortFilter(t, linkEthernet, []uint16{80}, 1560))
	raw, _ := bpf.Assemble(mustPortFilter(t, linkRaw, []uint16{80}, 1560))
	for _, tt := range []struct {
		cfg    filterConfig
		prefix int
		body   int
	}{
		{filterConfig{link: linkEthernet, ports: []uint16{80}, snaplen: 1560}, 0, len(eth)},
		{filterConfig{link: linkEthernet, ports: []uint16{80}, snaplen: 1560, loIndex: 1}, 3, len(eth)},
		{filterConfig{link: linkRaw, ports: []uint16{80}, snaplen: 1560}, 0, len(raw)},
		{filterConfig{link: linkAny, ports: []uint16{80}, snaplen: 1560}, 0, 4 + len(eth) + len(raw)},
		{filterConfig{link: linkAny, ports: []uint16{80}, snaplen: 1560, loIndex: 1}, 5, 4 + len(eth) + len(raw)},
	} {
		prog, err := buildFilter(tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(prog) != tt.prefix+tt.body {
			t.Fatalf("%+v: %d instructions, want %d + %d", tt.cfg, len(prog), tt.prefix, tt.body)
		}
		var sawType bool
		for _, ins := range prog[:tt.prefix] {
			if le, ok := ins.Disassemble().(bpf.LoadExtension); ok && le.Num == bpf.ExtType {
				sawType = true
			}
		}
		if tt.prefix > 0 && !sawType {
			t.Errorf("%+v: the prefix does not look at the packet type", tt.cfg)
		}
		if tt.cfg.link == linkAny {
			// The dispatch jumps over the Ethernet program to the raw one.
			if j, ok := prog[tt.prefix+3].Disassemble().(bpf.Jump); !ok || int(j.Skip) != len(eth) {
				t.Errorf("dispatch jump %v, want a skip of %d", prog[tt.prefix+3].Disassemble(), len(eth))
			}
			if got := prog[tt.prefix+4+len(eth):]; !equalPrograms(got, raw) {
				t.Errorf("the raw IP program does not follow the Ethernet one")
			}
		}
	}
}

// TestPortFilterEveryLength runs the kernel filter in the VM for every
// length of a -p list of separate ports, from one to the most the kernel
// takes: its first and last port pass as source and as destination, over
// IPv4 and IPv6, Ethernet and raw IP; ports beside them do not. Classic BPF
// conditional jumps skip at most 255 instructions, so lists of more than
// about 120 ports once jumped to the wrong place.
// It is long because it builds the frames once and walks every list length in one loop.
func TestPortFilterEveryLength(t *testing.T) {
	// One frame of each kind, built once; the ports are written into the
	// TCP header before each run.
	type kind struct {
		name  string
		link  int
		frame []byte
		tcp   int // offset of the TCP header
	}
	kinds := []kind{
		{"ethernet ipv4", linkEthernet, ipv4HTTP("192.0.2.1", "198.51.100.2", 1, 1, getReq), 14 + 20},
		{"ethernet ipv6", linkEthernet, ipv6HTTP("2001:db8::1", "2001:db8::2", 1, 1, getReq), 14 + 40},
		{"raw ipv4", linkRaw, ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0, tcpSegment(1, 1, 20, getReq)), 20},
		{"raw ipv6", linkRaw, ipv6Packet("2001:db8::1", "2001:db8::2", 6, nil, nil, tcpSegment(1, 1, 20, getReq)), 40},
	}
	const other = 40000 // the client's port: never listed
	run := func(vm *bpf.VM, k kind, sport, dport uint16) bool {
		binary.BigEndian.PutUint16(k.frame[k.tcp:], sport)
		binary.BigEndian.PutUint16(k.frame[k.tcp+2:], dport)
		n, err := vm.Run(k.frame)
		if err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		return n == 1560
	}

	// The most separate ports the kernel filter takes on one interface
	// (Ethernet with the prefix for lo, the longest program): the list
	// one longer makes too long a filter, and the configuration refuses
	// it, naming the most.
	ports := make([]uint16, maxFilter) // 1000, 1002, 1004, …: no two consecutive
	for i := range ports {
		ports[i] = uint16(1000 + 2*i)
	}
	most := sort.Search(len(ports), func(n int) bool {
		_, err := buildFilter(filterConfig{link: linkEthernet, ports: ports[:n+1], snaplen: 1560, loIndex: 1})
		return err != nil
	})
	if _, err := buildFilter(filterConfig{link: linkEthernet, ports: ports[:most+1], snaplen: 1560, loIndex: 1}); most < 2000 ||
		err == nil || !strings.Contains(err.Error(), "more than the kernel takes (4096)") {
		t.Fatalf("%d ports fit, then: %v; want about 2000, then too many instructions", most, err)
	}
	want := fmt.Sprintf("%d ports are more than the kernel filter holds on one interface: at most %d", most+1, most)
	if err := checkFilterSize(ports[:most+1], "eth0"); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("checkFilterSize(%d ports) = %v, want %q", most+1, err, want)
	}
	if err := checkFilterSize(ports[:most], "eth0"); err != nil {
		t.Errorf("checkFilterSize(%d ports) = %v, want nil", most, err)
	}

	for n := 1; n <= most; n++ {
		first, last := ports[0], ports[n-1]
		for _, link := range []int{linkEthernet, linkRaw} {
			vm, err := bpf.NewVM(mustPortFilter(t, link, ports[:n], 1560))
			if err != nil {
				t.Fatalf("%d ports: %v", n, err)
			}
			for _, k := range kinds {
				if k.link != link {
					continue
				}
				for _, p := range []uint16{first, last} {
					if !run(vm, k, p, other) || !run(vm, k, other, p) {
						t.Fatalf("%d ports, %s: port %d refused", n, k.name, p)
					}
				}
				// Ports not listed: beside the middle one, either way, and
				// beyond the last (each run through every test).
				for _, p := range [][2]uint16{{ports[n/2] + 1, other}, {other, ports[n/2] + 1}, {other, last + 1}} {
					if run(vm, k, p[0], p[1]) {
						t.Fatalf("%d ports, %s: ports %d → %d, not listed, passed", n, k.name, p[0], p[1])
					}
				}
			}
		}
	}
}

// TestPortFilterRuns: consecutive ports become range tests; every port
// from 0 to 1100 passes exactly when it is listed, as source and as
// destination, and a list of the most runs that fit works to its last.
// It is long because it is a table of port lists.
func TestPortFilterRuns(t *testing.T) {
	lists := [][]uint16{
		{80, 81},
		{1, 2, 3, 80, 443, 444, 8080},
		{100, 101, 102, 103, 104, 200, 202, 203, 204, 1000, 1001, 1099},
	}
	var long []uint16 // 0 … 1100 in runs of 1 to 9 ports, with gaps of 1 to 3: many groups
	for p, i := 1, 0; p < 1100; i++ {
		for range 1 + i%9 {
			long = append(long, uint16(p))
			p++
		}
		p += 1 + i%3
	}
	lists = append(lists, long)
	frame := ipv4HTTP("192.0.2.1", "198.51.100.2", 1, 1, getReq)
	for _, ports := range lists {
		vm, err := bpf.NewVM(mustPortFilter(t, linkEthernet, ports, 1560))
		if err != nil {
			t.Fatal(err)
		}
		for p := range 1101 {
			listed := slices.Contains(ports, uint16(p))
			for _, dst := range []bool{false, true} {
				binary.BigEndian.PutUint16(frame[34:], uint16(p))
				binary.BigEndian.PutUint16(frame[36:], 40000)
				if dst {
					binary.BigEndian.PutUint16(frame[34:], 40000)
					binary.BigEndian.PutUint16(frame[36:], uint16(p))
				}
				n, err := vm.Run(frame)
				if err != nil || (n > 0) != listed {
					t.Fatalf("list of %d ports (%d runs): port %d as destination=%v kept %d bytes (%v), listed=%v",
						len(ports), len(portRuns(ports)), p, dst, n, err, listed)
				}
			}
		}
	}

	// Runs of two, {4i+1, 4i+2}, as many as the filter holds with -i any,
	// where it holds two programs: all fit, the last run still works.
	var pairs []uint16
	for i := 0; ; i++ {
		next := append(pairs, uint16(4*i+1), uint16(4*i+2))
		if checkFilterSize(next, "any") != nil {
			break
		}
		pairs = next
	}
	if len(pairs)/2 < 490 { // 8 tests a run: 2 fields, 2 programs

		t.Fatalf("only %d runs of two fit with -i any", len(pairs)/2)
	}
	prog, err := buildFilter(filterConfig{link: linkAny, ports: pairs, snaplen: 1560, loIndex: 1})
	if err != nil || len(prog) > maxFilter {
		t.Fatalf("%d runs with -i any: %d instructions, %v", len(pairs)/2, len(prog), err)
	}
	vm, err := bpf.NewVM(mustPortFilter(t, linkEthernet, pairs, 1560))
	if err != nil {
		t.Fatal(err)
	}
	last := pairs[len(pairs)-1]
	for _, tt := range []struct {
		port uint16
		pass bool
	}{{last - 1, true}, {last, true}, {last + 1, false}, {last - 2, false}} {
		binary.BigEndian.PutUint16(frame[34:], 40000)
		binary.BigEndian.PutUint16(frame[36:], tt.port)
		if n, _ := vm.Run(frame); (n > 0) != tt.pass {
			t.Errorf("%d runs: port %d kept %d bytes, want pass=%v", len(pairs)/2, tt.port, n, tt.pass)
		}
	}
}

// TestFilterKernelLimit attaches the longest filter the configuration
// accepts to a socket: the kernel takes it, and refuses one instruction
// more, so maxFilter is the kernel's limit. (Any socket takes a filter;
// no privilege is needed.)
func TestFilterKernelLimit(t *testing.T) {
	attach := func(prog []bpf.RawInstruction) error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		filter := make([]unix.SockFilter, len(prog))
		for i, ins := range prog {
			filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		}
		return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
			&unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
	}
	for _, device := range []string{"eth0", "any"} {
		link := linkEthernet
		if device == "any" {
			link = linkAny
		}
		ports := make([]uint16, maxFilter) // 1, 3, 5, …
		for i := range ports {
			ports[i] = uint16(2*i + 1)
		}
		most := sort.Search(len(ports), func(n int) bool { return checkFilterSize(ports[:n+1], device) != nil })
		prog, err := buildFilter(filterConfig{link: link, ports: ports[:most], snaplen: 1560, loIndex: 1})
		if err != nil {
			t.Fatalf("-i %s, %d ports: %v", device, most, err)
		}
		if len(prog) < maxFilter-4 {
			t.Errorf("-i %s: the longest accepted list makes %d instructions; %d ports would still fit", device, len(prog), most+1)
		}
		if err := attach(prog); err != nil {
			t.Errorf("-i %s, %d ports, %d instructions: the kernel refuses the filter: %v", device, most, len(prog), err)
		}
	}
	long := make([]bpf.RawInstruction, maxFilter+1)
	long[len(long)-1] = bpf.RawInstruction{Op: 0x06} // ret #0; the rest are ld #0
	if err := attach(long[1:]); err != nil {
		t.Errorf("a filter of %d instructions: %v", maxFilter, err)
	}
	if err := attach(long); err != unix.EINVAL {
		t.Errorf("a filter of %d instructions: %v, want EINVAL", maxFilter+1, err)
	}
}

// TestAsmRefuses: the assembler returns an error, and does not panic, for
// a conditional jump too far for its 8 bits and for a missing or backward
// label; an unconditional jump goes as far as needed.
func TestAsmRefuses(t *testing.T) {
	build := func(gap int, cond bool, target string) error {
		a := &asm{}
		a.label("back")
		if cond {
			a.jeq(80, target, "")
		} else {
			a.jmp(target)
		}
		for range gap {
			a.ldx(0)
		}
		a.label("far")
		a.op(bpf.RetConstant{Val: 0})
		_, err := a.assemble()
		return err
	}
	for _, tt := range []struct {
		gap    int
		cond   bool
		target string
		ok     bool
	}{
		{255, true, "far", true},
		{256, true, "far", false},
		{5000, false, "far", true},
		{1, true, "nowhere", false},
		{1, false, "back", false},
	} {
		if err := build(tt.gap, tt.cond, tt.target); (err == nil) != tt.ok {
			t.Errorf("a jump (conditional %v) over %d instructions to %q: %v, want ok=%v", tt.cond, tt.gap, tt.target, err, tt.ok)
		}
	}
}

func mustPortFilter(t testing.TB, link int, ports []uint16, snaplen int) []bpf.Instruction {
	t.Helper()
	prog, err := portFilter(link, ports, snaplen)
	if err != nil {
		t.Fatalf("portFilter(%d, %d ports): %v", link, len(ports), err)
	}
	return prog
}

func equalPrograms(a, b []bpf.RawInstruction) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRingFor(t *testing.T) {
	g, err := ringFor(1560, 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	if g.frameSize%page != 0 || g.blockSize%g.frameSize != 0 || g.frameSize < 1560+frameOverhead {
		t.Errorf("bad geometry %+v", g)
	}
	if total := g.blockSize * g.numBlocks; total > 8<<20 || total < 7<<20 {
		t.Errorf("ring of %d bytes for -b 8", total)
	}
	for _, mb := range []int{1, 8, 64} {
		g, err := ringFor(1560, mb, 1)
		if err != nil || g.numBlocks < minBlocks || g.blockSize > maxBlock {
			t.Errorf("-b %d: %+v, %v; want at least %d blocks of at most 1 MiB", mb, g, err, minBlocks)
		}
	}
	if _, err := ringFor(262144, 0, 1); err == nil || !strings.Contains(err.Error(), "-b 0") {
		t.Errorf("ringFor(262144, 0, 1) error = %v, want one naming -b 0", err)
	}
	// The largest ring is whole; beyond it, and with sizes that would
	// overflow on the way, an error and no panic.
	if g, err := ringFor(262144, maxRingMB, 1); err != nil || g.blockSize*g.numBlocks > maxRingMB<<20 || g.blockSize*g.numBlocks < maxRingMB<<20*9/10 {
		t.Errorf("ringFor(262144, %d, 1) = %+v, %v", maxRingMB, g, err)
	}
	for _, tt := range []struct{ snaplen, mb int }{
		{1560, maxRingMB + 1}, {1560, 17592186044417}, {1560, math.MaxInt}, {1560, math.MinInt}, {1560, -17592186044417},
		{math.MaxInt, 8}, {0, 8}, {math.MinInt, 8},
	} {
		if g, err := ringFor(tt.snaplen, tt.mb, 1); err == nil {
			t.Errorf("ringFor(%d, %d, 1) = %+v, want an error", tt.snaplen, tt.mb, g)
		}
	}
}

// TestRingMemory: a ring takes at most a quarter of the machine's memory,
// checked when the capture opens (exit 1), before any socket.
func TestRingMemory(t *testing.T) {
	const gib = 1 << 30
	for _, tt := range []struct {
		mb     int
		memory uint64
		ok     bool
	}{
		{512, 2 * gib, true}, {513, 2 * gib, false}, {8, 32 << 20, true}, {9, 32 << 20, false}, {4096, 16 * gib, true},
	} {
		if err := checkRingMemory(tt.mb, tt.memory); (err == nil) != tt.ok {
			t.Errorf("checkRingMemory(%d, %d MB) = %v, want ok=%v", tt.mb, tt.memory>>20, err, tt.ok)
		}
	}
	_, err := openLive(liveConfig{iface: "lo", snaplen: 1560, ringMB: 600, memory: 2 * gib})
	if want := "-b 600: a ring of 600 MB is more than a quarter of this machine's memory (2048 MB); the ring is locked kernel memory"; err == nil || err.Error() != want {
		t.Errorf("openLive with -b 600 on 2 GiB: %v, want %q", err, want)
	}

	// Without a figure, the machine's own is read: as /proc/meminfo says.
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skip(err)
	}
	var kb uint64
	for _, line := range strings.Split(string(meminfo), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ = strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
		}
	}
	quarter := int(kb >> 10 / 4) // MB
	if quarter < 2 {
		t.Fatalf("MemTotal %d kB in /proc/meminfo", kb)
	}
	if err := checkRingMemory(quarter-1, 0); err != nil {
		t.Errorf("-b %d with MemTotal %d kB: %v", quarter-1, kb, err)
	}
	if err := checkRingMemory(quarter+2, 0); err == nil {
		t.Errorf("-b %d with MemTotal %d kB: no error", quarter+2, kb)
	}
}

// writePcap writes frames to a pcap file of the given link type, 1 ms apart.
func writePcap(t testing.TB, link layers.LinkType, frames [][]byte, start time.Time) string {
	return writePcapAt(t, link, frames, func(i int) time.Time { return start.Add(time.Duration(i) * time.Millisecond) })
}

// writePcapAt writes frames to a pcap file, frame i captured at at(i).
func writePcapAt(t testing.TB, link layers.LinkType, frames [][]byte, at func(int) time.Time) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, link); err != nil {
		t.Fatal(err)
	}
	for i, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: at(i), CaptureLength: len(fr), Length: len(fr)}
		if err := w.WritePacket(ci, fr); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestFileSourceErrors(t *testing.T) {
	dir := t.TempDir()
	notPcap := filepath.Join(dir, "notes.txt")
	os.WriteFile(notPcap, []byte("hello, this is not a capture\n"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)

	for _, tt := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.pcap"), "no such file"},
		{notPcap, "not a pcap or pcapng file"},
		{empty, "not a pcap or pcapng file"},
	} {
		_, stderr, code := runPipeline(t, "-r", tt.path, "-d", "-")
		if code != 1 || !strings.Contains(stderr, "-r "+tt.path) || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("-r %s: exit %d, stderr %q; want 1 and one line naming the file and %q", tt.path, code, stderr, tt.want)
		}
	}

	// A file cut in the middle of a packet: the lines before the cut are
	// written, the error is reported, and the exit code says so.
	good := writePcap(t, layers.LinkTypeEthernet, [][]byte{
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, getReq),
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40001, 80, getReq),
	}, time.Unix(1567315011, 0))
	data, _ := os.ReadFile(good)
	cut := filepath.Join(dir, "cut.pcap")
	os.WriteFile(cut, data[:len(data)-10], 0o644)
	out, stderr, code := runPipeline(t, "-r", cut, "-d", "-")
	if code != 1 || strings.Count(out, "\n") != 1 || !strings.Contains(stderr, "stopped: -r "+cut) {
		t.Errorf("cut file: exit %d, %d lines, stderr %q", code, strings.Count(out, "\n"), stderr)
	}
}

func TestFileSourceUnsupportedLink(t *testing.T) {
	frame := ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, getReq)
	path := writePcap(t, layers.LinkTypeIEEE80211Radio, [][]byte{frame, frame}, time.Unix(0, 0))
	out, stderr, code := runPipeline(t, "-r", path, "-d", "-")
	if code != 0 || out != "" || !strings.Contains(stderr, "unsupported_link=2") {
		t.Errorf("exit %d, out %q, stderr %q; want 0, no lines, unsupported_link=2", code, out, stderr)
	}
}

func TestFileFromStdin(t *testing.T) {
	path := writePcap(t, layers.LinkTypeEthernet, [][]byte{ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, getReq)}, time.Unix(1567315011, 0))
	data, _ := os.ReadFile(path)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { w.Write(data); w.Close() }()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old }()
	out, _, code := runPipeline(t, "-r", "-", "-d", "-")
	want := "2019-09-01 05:16:51.000 192.0.2.1#40000 198.51.100.2#80 CQ GET /index.html HTTP/1.1 www.example.com curl/8.0\n"
	if code != 0 || out != want {
		t.Errorf("exit %d, got %q, want %q", code, out, want)
	}
}

// ringFrame is a frame to put into a fake ring block.
type ringFrame struct {
	data      []byte
	wire      uint32
	sec, nsec uint32
	status    uint32 // TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID
	tci       uint32
	tpid      uint16
	hatype    uint16
	snaplen   uint32 // if not 0, overrides len(data): a corrupt header
}

// putBlock lays frames out in block i of ring as the kernel does
// (include/uapi/linux/if_packet.h) and hands the block to the reader.
func putBlock(t *testing.T, ring []byte, g ringGeometry, i int, frames []ringFrame) {
	t.Helper()
	base := i * g.blockSize
	clear(ring[base : base+g.blockSize])
	const first, mac = 48, frameLLOff + unix.SizeofSockaddrLinklayer + 6 // an odd offset: taken from the header, not assumed
	off := first
	for k, fr := range frames {
		h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&ring[base+off]))
		size := (mac + len(fr.data) + 15) &^ 15
		if k < len(frames)-1 {
			h.Next_offset = uint32(size)
		}
		h.Sec, h.Nsec, h.Len, h.Status, h.Mac = fr.sec, fr.nsec, fr.wire, fr.status, mac
		h.Snaplen = uint32(len(fr.data))
		if fr.snaplen != 0 {
			h.Snaplen = fr.snaplen
		}
		h.Hv1.Vlan_tci, h.Hv1.Vlan_tpid = fr.tci, fr.tpid
		ll := (*unix.RawSockaddrLinklayer)(unsafe.Pointer(&ring[base+off+frameLLOff]))
		ll.Hatype = fr.hatype
		copy(ring[base+off+mac:], fr.data)
		off += size
	}
	if off > g.blockSize {
		t.Fatalf("frames of %d bytes do not fit a block of %d", off, g.blockSize)
	}
	b := (*unix.TpacketHdrV1)(unsafe.Pointer(&ring[base+blockHdrOff]))
	b.Num_pkts, b.Offset_to_first_pkt = uint32(len(frames)), first
	b.Block_status = unix.TP_STATUS_USER
}

// TestRingWalk reads a ring laid out in memory as the kernel lays it out:
// frames in place, link types by device type, tags put back, blocks handed
// back in turn, a wait that times out on a block the kernel still owns,
// and corrupt frame headers skipped without a panic.
// It is long because it lays out a ring and walks it through every case in order.
func TestRingWalk(t *testing.T) {
	g := ringGeometry{frameSize: 4096, blockSize: 8192, numBlocks: 3}
	ring := make([]byte, g.blockSize*g.numBlocks)
	s := watchedRing(t, &liveSource{ring: ring, g: g, link: linkAny, addVLAN: true, state: &linkState{}})

	eth := []byte("dst---src---\x08\x00payload")
	putBlock(t, ring, g, 0, []ringFrame{
		{data: eth, wire: 1500, sec: 1567347411, nsec: 2000000, hatype: 1},
		{data: eth, wire: 60, hatype: 1, status: unix.TP_STATUS_VLAN_VALID, tci: 0x2005},
		{data: eth, wire: 60, hatype: 1, status: unix.TP_STATUS_VLAN_VALID | unix.TP_STATUS_VLAN_TPID_VALID, tci: 7, tpid: etherQinQ},
	})
	putBlock(t, ring, g, 1, []ringFrame{
		{data: []byte("\x45raw ip"), wire: 7, hatype: 65534},
		{data: []byte("\x45radiotap"), wire: 9, hatype: 803},
	})
	putBlock(t, ring, g, 2, []ringFrame{
		{data: eth, wire: 60, hatype: 1, snaplen: 1 << 20}, // ends past the block
		{data: eth, wire: 60, hatype: 1},
	})

	want := []struct {
		data string
		ts   int64
		wire int
		link int
	}{
		{string(eth), 1567347411_002000000, 1500, linkEthernet},
		{"dst---src---\x81\x00\x20\x05\x08\x00payload", 0, 64, linkEthernet},
		{"dst---src---\x88\xa8\x00\x07\x08\x00payload", 0, 64, linkEthernet},
		{"\x45raw ip", 0, 7, linkRaw},
		{"\x45radiotap", 0, 9, -1},
	}
	var f frame
	for i, w := range want {
		if err := s.next(&f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if string(f.data) != w.data || f.ts != w.ts || f.wire != w.wire || f.link != w.link {
			t.Errorf("frame %d = %q ts %d wire %d link %d, want %q ts %d wire %d link %d",
				i, f.data, f.ts, f.wire, f.link, w.data, w.ts, w.wire, w.link)
		}
		if i == 3 && s.blockHeader().Block_status != unix.TP_STATUS_USER {
			t.Errorf("block 1 handed back while its frames are being read")
		}
	}
	// Block 2 begins with a corrupt frame: the rest of the block is
	// skipped, the block handed back, and the reader waits for block 0,
	// which it handed back itself, until the next tick (nextTick).
	start := time.Now()
	if err := s.next(&f); err != errTimeout {
		t.Fatalf("reading a ring the kernel owns: %v, want errTimeout", err)
	}
	if end, tick := time.Now(), nextTick(start); end.Before(tick) {
		t.Errorf("the wait ended after %v, before the tick %v after its start", end.Sub(start), tick.Sub(start))
	}
	for i := range g.numBlocks {
		if st := (*unix.TpacketHdrV1)(unsafe.Pointer(&ring[i*g.blockSize+blockHdrOff])).Block_status; st != unix.TP_STATUS_KERNEL {
			t.Errorf("block %d status %#x after reading, want TP_STATUS_KERNEL", i, st)
		}
	}
	// The kernel hands block 0 over again: the reader goes on from there.
	putBlock(t, ring, g, 0, []ringFrame{{data: []byte("again"), wire: 5, hatype: 772}})
	if err := s.next(&f); err != nil || string(f.data) != "again" || f.link != linkEthernet {
		t.Errorf("after the wrap: %q link %d err %v, want \"again\" on lo as Ethernet", f.data, f.link, err)
	}
}

// TestPortSet: the reader's user-space check of the ports agrees with the
// list, at its ends and beside each listed port.
func TestPortSet(t *testing.T) {
	ports := []uint16{1, 63, 64, 80, 8080, 65535}
	s := newPortSet(ports)
	for p := 0; p <= 65535; p++ {
		if got, want := s.has(uint16(p)), slices.Contains(ports, uint16(p)); got != want {
			t.Errorf("port %d: in the set %v, want %v", p, got, want)
		}
	}
	if newPortSet(nil) != nil {
		t.Error("no list (every port) must give no set")
	}
}

// TestRingHalfFull: taking a block while the block half a ring ahead is
// ready too calls halfFull (the governor's early warning), once per such
// block; a reader less behind does not.
func TestRingHalfFull(t *testing.T) {
	g := ringGeometry{frameSize: 4096, blockSize: 8192, numBlocks: 4}
	ring := make([]byte, g.blockSize*g.numBlocks)
	calls := 0
	s := watchedRing(t, &liveSource{ring: ring, g: g, link: linkEthernet, state: &linkState{}, halfFull: func() { calls++ }})
	eth := []byte("dst---src---\x08\x00payload")
	for i := range 3 { // blocks 0, 1 and 2 ready, 3 not
		putBlock(t, ring, g, i, []ringFrame{{data: eth, wire: 60, hatype: 1}})
	}
	var f frame
	for i, want := range []int{1, 1, 1} { // block 0 (2 ahead ready), block 1 (3 not), block 2 (0 handed back)
		if err := s.next(&f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if calls != want {
			t.Errorf("after block %d: halfFull called %d times, want %d", i, calls, want)
		}
	}
}

// watchedRing makes s wait on a pipe in place of its socket: nothing ever
// wakes it, so a wait ends at its deadline. The pipe is closed with the
// test.
func watchedRing(t *testing.T, s *liveSource) *liveSource {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pw.Close(); pr.Close() })
	if err := s.watch(pr); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRingGroupBehind: in a fanout group, a reader that takes a block also
// sees another reader's ring half full (that reader may be parked where
// it cannot tell), and a member's close leaves the rings mapped until the
// last member closes, so that the others never read an unmapped ring.
func TestRingGroupBehind(t *testing.T) {
	g := ringGeometry{frameSize: 4096, blockSize: 8192, numBlocks: 4}
	calls := 0
	a := watchedRing(t, &liveSource{ring: make([]byte, g.blockSize*g.numBlocks), g: g, link: linkEthernet, state: &linkState{}, halfFull: func() { calls++ }})
	b := &liveSource{fd: -1, ring: make([]byte, g.blockSize*g.numBlocks), g: g, link: linkEthernet, state: &linkState{}}
	grp := &ringGroup{members: []*liveSource{a, b}}
	grp.open.Store(2)
	a.group, b.group = grp, grp
	eth := []byte("dst---src---\x08\x00payload")
	putBlock(t, a.ring, g, 0, []ringFrame{{data: eth, wire: 60, hatype: 1}})
	putBlock(t, a.ring, g, 1, []ringFrame{{data: eth, wire: 60, hatype: 1}})
	var f frame
	if err := a.next(&f); err != nil || calls != 0 {
		t.Fatalf("a's block 0, no ring half full: err %v, halfFull called %d times", err, calls)
	}
	// b's reader is at block 0 and has not come for it; blocks 0 to 2 wait.
	for i := range 3 {
		putBlock(t, b.ring, g, i, []ringFrame{{data: eth, wire: 60, hatype: 1}})
	}
	if err := a.next(&f); err != nil || calls != 1 {
		t.Fatalf("a's block 1 with b's ring half full: err %v, halfFull called %d times, want 1", err, calls)
	}
	a.close()
	if a.ring == nil || b.ring == nil {
		t.Fatal("the first member's close unmapped a ring of the group")
	}
	b.close()
	if a.ring != nil || b.ring != nil {
		t.Error("the last member's close left a ring of the group mapped")
	}
}

// TestNextTick: the readers' deadlines and the governor's samples fall on
// the same ticks, multiples of pollTimeout, each within pollTimeout.
func TestNextTick(t *testing.T) {
	start := time.Now()
	var first time.Time
	for _, d := range []time.Duration{0, time.Nanosecond, 37 * time.Millisecond, pollTimeout - time.Nanosecond, pollTimeout, 5*pollTimeout + 1} {
		now := start.Add(d)
		tick := nextTick(now)
		if !tick.After(now) || tick.Sub(now) > pollTimeout || tick.UnixNano()%int64(pollTimeout) != 0 {
			t.Errorf("nextTick(now+%v) = now+%v (Unix ns %d): not the next multiple of %v", d, tick.Sub(start), tick.UnixNano(), pollTimeout)
		}
		if d == 0 {
			first = tick
		}
		if within := now.Before(first); within && !tick.Equal(first) {
			t.Errorf("nextTick(now+%v) = now+%v, another tick than nextTick(now) = now+%v", d, tick.Sub(start), first.Sub(start))
		}
	}
}
