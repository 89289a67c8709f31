package main

// Packet sources: the live AF_PACKET ring and capture files, behind one
// small interface so that the rest of the pipeline cannot tell them apart;
// and the kernel filter, built here as a classic BPF program.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/afpacket"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// frame is one captured frame. data belongs to the source and is valid
// only until the next call to next.
type frame struct {
	data []byte
	ts   int64 // capture time, Unix nanoseconds
	wire int   // length on the wire, >= len(data)
	link int   // link type (DLT number), see parser.go
}

// errTimeout is returned by a live source when no frame came within its
// poll timeout; the reader uses the pause to flush and to look at shutdown.
var errTimeout = errors.New("poll timeout")

// packetSource is where frames come from: an AF_PACKET socket or a file.
type packetSource interface {
	// next returns the next frame, errTimeout, or io.EOF at the end.
	next(f *frame) error
	// kernelStats returns the kernel's totals since the source was opened
	// (zero for files).
	kernelStats() kernelCounts
	// drainTime is how long after a stop request the source may still
	// hold frames captured before it: the ring's block timeout for a live
	// socket, zero for files.
	drainTime() time.Duration
	// describe names the source for the start message.
	describe() string
	close()
}

// kernelCounts are the socket's counters, added up over the run.
type kernelCounts struct {
	received uint64 // frames the filter passed: put in the ring, or dropped
	drops    uint64 // frames dropped because the ring was full
	freezes  uint64 // times the ring's queue was frozen
}

// fileSource reads pcap and pcapng files with gopacket/pcapgo.
type fileSource struct {
	name  string
	f     *os.File
	br    *bufio.Reader
	pipe  bool // a pipe, FIFO or socket: wait for data with a timeout
	pcap  *pcapgo.Reader
	ng    *pcapgo.NgReader
	links []int // pcapng: link type of each interface, by index
}

// maxFileFrame bounds the buffer a hostile file can make the reader
// allocate for one frame: above any real snap length (tcpdump's is 262144).
const maxFileFrame = 262144

// openFile opens a pcap or pcapng file ("-" is standard input), telling
// the formats apart by their first four bytes.
func openFile(name string) (*fileSource, error) {
	f := os.Stdin
	if name != "-" {
		var err error
		if f, err = os.Open(name); err != nil {
			return nil, err
		}
	}
	s := &fileSource{name: name, f: f}
	if info, err := f.Stat(); err == nil && !info.Mode().IsRegular() {
		s.pipe = true // e.g. tcpdump -w - | httplog -r -
	}
	// 1 MiB of read-ahead: large sequential reads, a few syscalls per MiB.
	r := bufio.NewReaderSize(f, 1<<20)
	s.br = r
	magic, err := r.Peek(4)
	if err != nil {
		s.close()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("not a pcap or pcapng file: too short")
		}
		return nil, err
	}
	if binary.BigEndian.Uint32(magic) == 0x0a0d0d0a { // pcapng section header
		s.ng, err = pcapgo.NewNgReader(r, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	} else {
		s.pcap, err = pcapgo.NewReader(r)
		if err == nil && s.pcap.Snaplen() < maxFileFrame {
			s.pcap.SetSnaplen(maxFileFrame) // some writers put 0 or too little here
		}
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("not a pcap or pcapng file: %v", err)
	}
	return s, nil
}

func (s *fileSource) next(f *frame) error {
	// From a pipe, packets come when the writer sends them: wait for the
	// next one at most pollTimeout, so that the reader can hand on its
	// batches and see shutdown meanwhile, as with a live socket. Once a
	// packet has begun to arrive, the rest of it is waited for.
	if s.pipe && s.br.Buffered() == 0 {
		fds := []unix.PollFd{{Fd: int32(s.f.Fd()), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, int(pollTimeout/time.Millisecond)); n == 0 && err == nil {
			return errTimeout
		}
	}
	var (
		data []byte
		ci   gopacket.CaptureInfo
		err  error
	)
	if s.ng != nil {
		data, ci, err = s.ng.ZeroCopyReadPacketData()
	} else {
		data, ci, err = s.pcap.ZeroCopyReadPacketData()
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("-r %s: %v", s.name, err)
	}
	f.data, f.ts, f.wire = data, ci.Timestamp.UnixNano(), ci.Length
	if s.ng != nil {
		f.link = s.ngLink(ci.InterfaceIndex)
	} else {
		f.link = int(s.pcap.LinkType())
	}
	return nil
}

// ngLink returns the link type of pcapng interface i, remembering it.
func (s *fileSource) ngLink(i int) int {
	for len(s.links) <= i && len(s.links) < s.ng.NInterfaces() {
		iface, _ := s.ng.Interface(len(s.links))
		s.links = append(s.links, int(iface.LinkType))
	}
	if i < 0 || i >= len(s.links) {
		return -1 // no such interface: counted as an unsupported link type
	}
	return s.links[i]
}

func (s *fileSource) kernelStats() kernelCounts { return kernelCounts{} }
func (s *fileSource) drainTime() time.Duration  { return 0 }
func (s *fileSource) describe() string {
	if s.ng != nil {
		return "pcapng file " + s.name
	}
	return "pcap file " + s.name
}

func (s *fileSource) close() {
	if s.f != os.Stdin {
		s.f.Close()
	}
}

// liveSource reads an AF_PACKET TPACKET_V3 ring without copying: a frame
// points into the ring until the next call.
type liveSource struct {
	tp                  *afpacket.TPacket
	link                int         // link type of every frame, or linkAny: by interface
	links               map[int]int // with linkAny: link type by interface index
	lastIndex, lastLink int         // the last interface looked up, and its link type
	desc                string
	last                [3]uint32 // gopacket's 32-bit sums as last read: packets, drops, freezes
	totals              kernelCounts
}

// ringGeometry is the layout of the ring: frameSize bytes hold the largest
// frame, blocks of blockSize bytes are handed between kernel and reader.
type ringGeometry struct {
	frameSize, blockSize, numBlocks int
}

// TPACKET_V3 puts a 48-byte header and a 20-byte sockaddr_ll before each
// frame, aligned to 16 bytes, plus 4 bytes for a VLAN tag put back: 96
// covers them with room to spare.
const frameOverhead = 96

// Ring blocks. The kernel fills a block and hands it over whole (or after
// the block timeout); every hand-over costs the reader a poll(2) and the Go
// scheduler a thread hand-off, so blocks are large: 1 MiB (about 700
// full-size frames) measured a quarter less CPU than 256 KiB at 50k
// packets/s. A small ring is still cut into at least minBlocks blocks, so
// the kernel can fill some while the reader works through another.
const (
	maxBlock  = 1 << 20
	minBlocks = 8
)

// ringFor computes the ring for a snap length and a total size in MiB.
// A frame slot is rounded up to whole pages, as the kernel wants blocks
// to be page multiples and frames to divide blocks.
func ringFor(snaplen, megabytes int) (ringGeometry, error) {
	page := os.Getpagesize()
	frame := (snaplen + frameOverhead + page - 1) / page * page
	block := frame * max(1, min(maxBlock, megabytes<<20/minBlocks)/frame)
	g := ringGeometry{frameSize: frame, blockSize: block}
	g.numBlocks = megabytes << 20 / block
	if megabytes <= 0 || g.numBlocks < 1 {
		return g, fmt.Errorf("-b %d: a ring of %d MB cannot hold one block of %d bytes (for -s %d)",
			megabytes, megabytes, block, snaplen)
	}
	return g, nil
}

// pollTimeout bounds how long a read waits for a frame, so that the reader
// sees shutdown and flushes partial batches within this time.
const pollTimeout = 100 * time.Millisecond

// blockTimeout: the kernel hands a ring block to the reader when it is
// full or when its first frame is this old, so on a quiet link a frame
// waits at most this long in the ring (gopacket's default, made explicit
// because shutdown waits for it: see drainTime).
const blockTimeout = 64 * time.Millisecond

// liveConfig is what openLive needs to know.
type liveConfig struct {
	iface   string // "any" for all interfaces
	snaplen int
	ringMB  int
	addVLAN bool
	ports   []uint16 // nil: every port
}

// openLive opens the capture socket on an interface and attaches the
// kernel filter. The socket is SOCK_RAW, so frames keep their link-layer
// header (and the VLAN tags the NIC left in them); with "any", each frame's
// link type follows from the interface it was seen on.
func openLive(c liveConfig) (*liveSource, error) {
	g, err := ringFor(c.snaplen, c.ringMB)
	if err != nil {
		return nil, err
	}
	opts := []any{
		afpacket.TPacketVersion3,
		afpacket.SocketRaw,
		afpacket.OptFrameSize(g.frameSize),
		afpacket.OptBlockSize(g.blockSize),
		afpacket.OptNumBlocks(g.numBlocks),
		afpacket.OptPollTimeout(pollTimeout),
		afpacket.OptBlockTimeout(blockTimeout),
		afpacket.OptAddVLANHeader(c.addVLAN), // only frames whose tag was taken out get it back
	}
	s := &liveSource{link: linkAny, links: map[int]int{}}
	loIndex := 0
	if lo, err := net.InterfaceByName("lo"); err == nil {
		loIndex = lo.Index
	}
	if c.iface != "any" {
		iface, err := net.InterfaceByName(c.iface)
		if err != nil {
			return nil, fmt.Errorf("-i %s: no such interface", c.iface)
		}
		if s.link = interfaceLink(c.iface); s.link < 0 {
			return nil, fmt.Errorf("-i %s: device type %s is not supported (Ethernet, loopback and IP-only devices are)", c.iface, arphrdOf(c.iface))
		}
		if iface.Index != loIndex {
			loIndex = 0 // looped-back copies cannot reach this socket
		}
		opts = append(opts, afpacket.OptInterface(c.iface))
	}
	tp, err := afpacket.NewTPacket(opts...)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("-i %s: capturing needs root (CAP_NET_RAW): %v", c.iface, err)
		}
		return nil, fmt.Errorf("-i %s: %v", c.iface, err)
	}
	prog, err := buildFilter(filterConfig{link: s.link, ports: c.ports, snaplen: c.snaplen, loIndex: loIndex})
	if err == nil {
		err = tp.SetBPF(prog)
	}
	if err != nil {
		tp.Close()
		return nil, fmt.Errorf("-i %s: attaching the kernel filter: %v", c.iface, err)
	}
	s.tp = tp
	s.desc = fmt.Sprintf("interface %s (AF_PACKET, TPACKET_V3, ring %d MB = %d blocks of %d KiB, frame %d, filter %d instructions)",
		c.iface, c.ringMB, g.numBlocks, g.blockSize>>10, g.frameSize, len(prog))
	return s, nil
}

// arphrdLinks maps ARPHRD device types (include/uapi/linux/if_arp.h) to
// the link type of their frames on a SOCK_RAW packet socket.
var arphrdLinks = map[string]int{
	"1":     linkEthernet, // ARPHRD_ETHER: Ethernet, veth, bridges, bonds, VLAN devices
	"772":   linkEthernet, // ARPHRD_LOOPBACK: lo, with a zeroed Ethernet header
	"65534": linkRaw,      // ARPHRD_NONE: tun, wireguard
	"512":   linkRaw,      // ARPHRD_PPP
	"519":   linkRaw,      // ARPHRD_RAWIP
	"768":   linkRaw,      // ARPHRD_TUNNEL: ipip
	"769":   linkRaw,      // ARPHRD_TUNNEL6: ip6tnl
	"776":   linkRaw,      // ARPHRD_SIT
	"778":   linkRaw,      // ARPHRD_IPGRE
}

// interfaceLink returns the link type of an interface's frames, or -1 for
// a device type httplog does not decode.
func interfaceLink(iface string) int {
	if link, ok := arphrdLinks[arphrdOf(iface)]; ok {
		return link
	}
	return -1
}

// arphrdOf reads the ARPHRD type of an interface ("1" when unreadable:
// Ethernet is by far the most likely).
func arphrdOf(iface string) string {
	b, err := os.ReadFile("/sys/class/net/" + iface + "/type")
	if err != nil {
		return "1"
	}
	return strings.TrimSpace(string(b))
}

// linkOf returns the link type of frames seen on interface index i (with
// "any"), looking each interface up once.
func (s *liveSource) linkOf(i int) int {
	if i == s.lastIndex && s.lastLink != 0 {
		return s.lastLink
	}
	link, ok := s.links[i]
	if !ok {
		link = -1 // gone already: counted as unsupported
		if iface, err := net.InterfaceByIndex(i); err == nil {
			link = interfaceLink(iface.Name)
		}
		s.links[i] = link
	}
	s.lastIndex, s.lastLink = i, link
	return link
}

func (s *liveSource) next(f *frame) error {
	data, ci, err := s.tp.ZeroCopyReadPacketData()
	if err != nil {
		if errors.Is(err, afpacket.ErrTimeout) {
			return errTimeout
		}
		return err
	}
	f.data, f.ts, f.wire, f.link = data, ci.Timestamp.UnixNano(), ci.Length, s.link
	if s.link == linkAny {
		f.link = s.linkOf(ci.InterfaceIndex)
	}
	return nil
}

// kernelStats reads the socket's counters. The kernel resets them on every
// read; gopacket adds them up in 32 bits, so the growth since the last
// call is added to 64-bit totals here (call it at least once per 2^32
// frames).
func (s *liveSource) kernelStats() kernelCounts {
	_, v3, err := s.tp.SocketStats()
	if err == nil {
		now := [3]uint32{uint32(v3.Packets()), uint32(v3.Drops()), uint32(v3.QueueFreezes())}
		s.totals.received += uint64(now[0] - s.last[0])
		s.totals.drops += uint64(now[1] - s.last[1])
		s.totals.freezes += uint64(now[2] - s.last[2])
		s.last = now
	}
	return s.totals
}

// drainTime: twice the block timeout covers the retire timer's slack.
func (s *liveSource) drainTime() time.Duration { return 2 * blockTimeout }
func (s *liveSource) describe() string         { return s.desc }
func (s *liveSource) close()                   { s.tp.Close() }

// linkAny stands for the frames of all interfaces: Ethernet or raw IP,
// according to the device each frame was seen on.
const linkAny = -2

// filterConfig describes the kernel filter to build.
type filterConfig struct {
	link    int      // linkEthernet, linkRaw, or linkAny
	ports   []uint16 // nil: every TCP port
	snaplen int      // bytes kept of an accepted frame
	loIndex int      // ifindex of lo when its looped-back copies can be seen
}

// Packet types of the kernel (skb->pkt_type) and a fragment mask.
const (
	packetOutgoing = 4      // PACKET_OUTGOING
	ipv4FragOffset = 0x1fff // fragment offset bits of IPv4 flags+offset
)

// buildFilter assembles the kernel filter: accept TCP over IPv4 or IPv6
// (with up to two VLAN tags on Ethernet) to or from one of the ports.
// IPv6 packets whose first next header is an extension header go to user
// space, which walks the chain; later IPv4 fragments are refused.
//
// On lo every frame passes the socket twice, once going out and once
// coming in; a prefix drops the outgoing copy so each is logged once.
// That prefix uses kernel extensions that x/net/bpf's VM cannot run, so
// the tests run the rest (portFilter) in the VM and the prefix live.
func buildFilter(c filterConfig) ([]bpf.RawInstruction, error) {
	var prog []bpf.Instruction
	switch {
	case c.loIndex != 0 && c.link == linkAny:
		prog = []bpf.Instruction{
			bpf.LoadExtension{Num: bpf.ExtInterfaceIndex},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(c.loIndex), SkipTrue: 3},
			bpf.LoadExtension{Num: bpf.ExtType},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: packetOutgoing, SkipTrue: 1},
			bpf.RetConstant{Val: 0},
		}
	case c.loIndex != 0:
		prog = []bpf.Instruction{
			bpf.LoadExtension{Num: bpf.ExtType},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: packetOutgoing, SkipTrue: 1},
			bpf.RetConstant{Val: 0},
		}
	}
	if c.link == linkAny {
		// Dispatch on the device type: Ethernet and loopback frames to the
		// Ethernet program, all others to the raw IP one. Each program ends
		// in its own returns, so they can simply follow each other.
		eth := portFilter(linkEthernet, c.ports, c.snaplen)
		prog = append(prog,
			bpf.LoadExtension{Num: bpf.ExtLinkLayerType},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipTrue: 2},   // ARPHRD_ETHER
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 772, SkipTrue: 1}, // ARPHRD_LOOPBACK
			bpf.Jump{Skip: uint32(len(eth))},
		)
		prog = append(prog, eth...)
		prog = append(prog, portFilter(linkRaw, c.ports, c.snaplen)...)
	} else {
		prog = append(prog, portFilter(c.link, c.ports, c.snaplen)...)
	}
	return bpf.Assemble(prog)
}

// portFilter is the part of the kernel filter the BPF VM can run.
//
// Registers: A holds the value under test, X the offset of the current
// header. Labels are resolved by a small assembler below, since classic
// BPF jumps are relative and counted in instructions.
func portFilter(link int, ports []uint16, snaplen int) []bpf.Instruction {
	a := &asm{}
	if link == linkEthernet {
		// A = EtherType after up to two VLAN tags, X = network offset.
		a.op(bpf.LoadAbsolute{Off: 12, Size: 2})
		a.ldx(14)
		for _, off := range []uint32{16, 20} {
			tag := fmt.Sprint("tag", off)
			a.jeq(etherVLAN, tag, "")
			a.jeq(etherQinQ, tag, "")
			a.jeq(etherQinQv1, tag, "notag")
			a.label(tag)
			a.op(bpf.LoadAbsolute{Off: off, Size: 2})
			a.ldx(off + 2)
		}
		// A third tag: too deep for the filter; user space decodes any number.
		a.jeq(etherVLAN, "accept", "")
		a.jeq(etherQinQ, "accept", "")
		a.jeq(etherQinQv1, "accept", "")
		a.label("notag")
		a.jeq(etherIPv4, "ipv4", "")
		a.jeq(etherIPv6, "ipv6", "reject")
	} else {
		// Raw IP: the version nibble tells IPv4 from IPv6, X = 0.
		a.ldx(0)
		a.op(bpf.LoadAbsolute{Off: 0, Size: 1})
		a.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
		a.jeq(4, "ipv4", "")
		a.jeq(6, "ipv6", "reject")
	}

	a.label("ipv4")
	a.op(bpf.LoadIndirect{Off: 9, Size: 1})
	a.jeq(6, "", "reject") // not TCP
	a.op(bpf.LoadIndirect{Off: 6, Size: 2})
	a.jset(ipv4FragOffset, "reject", "") // a later fragment
	// X += 4 * IHL: the TCP header follows the IPv4 header and its options.
	a.op(bpf.LoadIndirect{Off: 0, Size: 1})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2})
	a.op(bpf.ALUOpX{Op: bpf.ALUOpAdd})
	a.op(bpf.TAX{})
	a.jmp("ports")

	a.label("ipv6")
	a.op(bpf.LoadIndirect{Off: 6, Size: 1})
	a.jeq(6, "tcp6", "")
	for _, ext := range []uint32{ip6HopByHop, ip6Routing, ip6Fragment, ip6AH, ip6DestOpts, ip6Mobility, ip6HIP, ip6Shim6} {
		a.jeq(ext, "accept", "") // user space walks the extension headers
	}
	a.jmp("reject")
	a.label("tcp6")
	a.op(bpf.TXA{})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 40})
	a.op(bpf.TAX{})

	a.label("ports")
	if len(ports) > 0 {
		for _, field := range []uint32{0, 2} { // source port, destination port
			a.op(bpf.LoadIndirect{Off: field, Size: 2})
			for _, p := range ports {
				a.jeq(uint32(p), "accept", "")
			}
		}
		a.jmp("reject")
	}
	a.label("accept")
	a.op(bpf.RetConstant{Val: uint32(snaplen)})
	a.label("reject")
	a.op(bpf.RetConstant{Val: 0})
	return a.assemble()
}

// asm collects BPF instructions with symbolic jump targets.
type asm struct {
	prog   []bpf.Instruction
	labels map[string]int
	fixups []fixup
}

// fixup records a jump whose targets are labels ("" = next instruction).
type fixup struct {
	at          int
	true, false string
}

func (a *asm) op(i bpf.Instruction) { a.prog = append(a.prog, i) }
func (a *asm) ldx(v uint32)         { a.op(bpf.LoadConstant{Dst: bpf.RegX, Val: v}) }

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.prog)
}

func (a *asm) jeq(v uint32, t, f string) {
	a.fixups = append(a.fixups, fixup{len(a.prog), t, f})
	a.op(bpf.JumpIf{Cond: bpf.JumpEqual, Val: v})
}

func (a *asm) jset(mask uint32, t, f string) {
	a.fixups = append(a.fixups, fixup{len(a.prog), t, f})
	a.op(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: mask})
}

func (a *asm) jmp(to string) {
	a.fixups = append(a.fixups, fixup{len(a.prog), to, ""})
	a.op(bpf.Jump{})
}

// assemble resolves labels into relative skips. Programs here are far
// shorter than the 255 instructions a conditional jump can skip.
func (a *asm) assemble() []bpf.Instruction {
	skip := func(from int, label string) uint32 {
		if label == "" {
			return 0
		}
		to, ok := a.labels[label]
		if !ok || to <= from {
			panic("bpf: bad label " + label) // a bug in portFilter, not input
		}
		return uint32(to - from - 1)
	}
	for _, f := range a.fixups {
		switch ins := a.prog[f.at].(type) {
		case bpf.JumpIf:
			ins.SkipTrue, ins.SkipFalse = uint8(skip(f.at, f.true)), uint8(skip(f.at, f.false))
			a.prog[f.at] = ins
		case bpf.Jump:
			ins.Skip = skip(f.at, f.true)
			a.prog[f.at] = ins
		}
	}
	return a.prog
}
