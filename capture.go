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
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/google/gopacket"
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

// liveSource reads the TPACKET_V3 receive ring of an AF_PACKET socket,
// mapped into memory. The kernel fills a block of the ring with frames and
// hands it over by setting the block's status word; the reader walks the
// frames in place and hands the block back the same way. No system call
// is made per frame or per block: a frame points into the ring until the
// next call of next.
//
// When no block is ready, next parks in Go's netpoller on the socket,
// which the kernel wakes when it hands a block over. An earlier version
// waited in a blocking poll(2) inside gopacket's afpacket: the reader's Go
// processor then sat in a system call at every wait, the runtime's sysmon
// thread stayed awake to take it away, and every ring block cost several
// thread switches. In the netpoller no system call is made between blocks
// (docs/DESIGN.md and docs/BENCHMARKS.md have the figures).
type liveSource struct {
	fd    int                // the socket while being set up; -1 once file owns it
	file  *os.File           // the socket, registered with Go's netpoller
	conn  syscall.RawConn    // file's, to wait on
	ready func(uintptr) bool // the wait's test: blockReady, made once
	ring  []byte             // numBlocks blocks of blockSize bytes
	g     ringGeometry

	link    int    // link type of every frame, or linkAny: by device type
	addVLAN bool   // put tags the kernel took out back into the frame
	tagged  []byte // a frame with its tag put back

	iface   string               // as given to -i
	ifindex int                  // 0 with "any"
	logf    func(string, ...any) // for the interface going down and up
	down    bool                 // the interface went down, and has not sent since

	block int    // the block being read, or waited for
	owned bool   // block is the reader's (TP_STATUS_USER)
	left  uint32 // frames of block not read yet
	off   int    // offset in the block of the next frame

	desc   string
	totals kernelCounts
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
// the block timeout), and each hand-over wakes the reader, so blocks are
// large: 1 MiB (about 700 full-size frames) measured a quarter less CPU
// than 256 KiB at 50k packets/s. A small ring is still cut into at least
// minBlocks blocks, so the kernel can fill some while the reader works
// through another.
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
// waits at most this long in the ring (shutdown waits for it: see
// drainTime).
const blockTimeout = 64 * time.Millisecond

// liveConfig is what openLive needs to know.
type liveConfig struct {
	iface   string // "any" for all interfaces
	snaplen int
	ringMB  int
	addVLAN bool
	ports   []uint16             // nil: every port
	logf    func(string, ...any) // messages about the interface
}

// openLive opens the capture socket on an interface. The socket is
// SOCK_RAW, so frames keep their link-layer header (and the VLAN tags the
// NIC left in them); with "any", each frame's link type follows from the
// type of the device it was seen on.
func openLive(c liveConfig) (*liveSource, error) {
	g, err := ringFor(c.snaplen, c.ringMB)
	if err != nil {
		return nil, err
	}
	s := &liveSource{fd: -1, link: linkAny, addVLAN: c.addVLAN, g: g, iface: c.iface, logf: c.logf}
	loIndex, ifindex := 0, 0 // ifindex 0 binds to every interface
	if lo, err := net.InterfaceByName("lo"); err == nil {
		loIndex = lo.Index
	}
	if c.iface != "any" {
		iface, err := net.InterfaceByName(c.iface)
		if err != nil {
			return nil, fmt.Errorf("-i %s: no such interface", c.iface)
		}
		if s.link = interfaceLink(c.iface); s.link < 0 {
			return nil, fmt.Errorf("-i %s: device type %d is not supported (Ethernet, loopback and IP-only devices are)", c.iface, arphrdOf(c.iface))
		}
		if iface.Index != loIndex {
			loIndex = 0 // looped-back copies cannot reach this socket
		}
		ifindex = iface.Index
	}
	s.ifindex = ifindex
	prog, err := buildFilter(filterConfig{link: s.link, ports: c.ports, snaplen: c.snaplen, loIndex: loIndex})
	if err != nil {
		return nil, fmt.Errorf("-i %s: building the kernel filter: %v", c.iface, err)
	}
	if err := s.open(ifindex, prog); err != nil {
		s.close()
		if errors.Is(err, unix.EPERM) {
			return nil, errNeedsRoot(c.iface)
		}
		return nil, fmt.Errorf("-i %s: %v", c.iface, err)
	}
	s.desc = fmt.Sprintf("interface %s (AF_PACKET, TPACKET_V3, ring %d MB = %d blocks of %d KiB, frame %d, filter %d instructions)",
		c.iface, c.ringMB, g.numBlocks, g.blockSize>>10, g.frameSize, len(prog))
	return s, nil
}

// errNeedsRoot is the error of a capture this process may not open.
func errNeedsRoot(iface string) error {
	return fmt.Errorf("-i %s: capturing needs root (CAP_NET_RAW): %v", iface, unix.EPERM)
}

// checkCapturePermission is openLive's permission check made without a
// socket (for -check): the effective capabilities must hold CAP_NET_RAW.
// If they cannot be read, it says nothing: the start will tell.
func checkCapturePermission(iface string) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3: two 32-bit words
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil
	}
	if data[unix.CAP_NET_RAW/32].Effective&(1<<(unix.CAP_NET_RAW%32)) == 0 {
		return errNeedsRoot(iface)
	}
	return nil
}

// open makes the socket: it attaches the filter and maps the ring before
// binding to the interface, so that no frame reaches the ring unfiltered.
func (s *liveSource) open(ifindex int, prog []bpf.RawInstruction) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("opening an AF_PACKET socket: %w", err)
	}
	s.fd = fd
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("asking for TPACKET_V3: %v", err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("attaching the kernel filter: %v", err)
	}
	g := s.g
	req := unix.TpacketReq3{
		Block_size:     uint32(g.blockSize),
		Block_nr:       uint32(g.numBlocks),
		Frame_size:     uint32(g.frameSize),
		Frame_nr:       uint32(g.blockSize / g.frameSize * g.numBlocks),
		Retire_blk_tov: uint32(blockTimeout / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("making a ring of %d blocks of %d bytes: %v", g.numBlocks, g.blockSize, err)
	}
	if s.ring, err = unix.Mmap(fd, 0, g.blockSize*g.numBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fmt.Errorf("mapping the ring (%d bytes): %v", g.blockSize*g.numBlocks, err)
	}
	const ethPAll = uint16(unix.ETH_P_ALL)
	sa := &unix.SockaddrLinklayer{Protocol: ethPAll<<8 | ethPAll>>8, Ifindex: ifindex} // network byte order
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("binding the capture socket: %v", err)
	}
	// The socket is non-blocking, so os.NewFile registers it with the
	// netpoller.
	s.fd = -1
	return s.watch(os.NewFile(uintptr(fd), "AF_PACKET socket"))
}

// watch makes f, which the kernel wakes when it hands a block over, the
// file next waits on. A deadline can only be set on a file registered
// with the netpoller, so that is checked here.
func (s *liveSource) watch(f *os.File) error {
	s.file = f
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("the capture socket cannot be waited on: %v", err)
	}
	var err error
	if s.conn, err = f.SyscallConn(); err != nil {
		return err
	}
	s.ready = func(uintptr) bool { return s.blockReady() }
	return nil
}

// arphrdLinks maps ARPHRD device types (include/uapi/linux/if_arp.h) to
// the link type of their frames on a SOCK_RAW packet socket.
var arphrdLinks = map[uint16]int{
	1:     linkEthernet, // ARPHRD_ETHER: Ethernet, veth, bridges, bonds, VLAN devices
	772:   linkEthernet, // ARPHRD_LOOPBACK: lo, with a zeroed Ethernet header
	65534: linkRaw,      // ARPHRD_NONE: tun, wireguard
	512:   linkRaw,      // ARPHRD_PPP
	519:   linkRaw,      // ARPHRD_RAWIP
	768:   linkRaw,      // ARPHRD_TUNNEL: ipip
	769:   linkRaw,      // ARPHRD_TUNNEL6: ip6tnl
	776:   linkRaw,      // ARPHRD_SIT
	778:   linkRaw,      // ARPHRD_IPGRE
}

// interfaceLink returns the link type of an interface's frames, or -1 for
// a device type httplog does not decode.
func interfaceLink(iface string) int {
	return hatypeLink(arphrdOf(iface))
}

// hatypeLink returns the link type of frames of a device type, or -1.
func hatypeLink(hatype uint16) int {
	if link, ok := arphrdLinks[hatype]; ok {
		return link
	}
	return -1
}

// arphrdOf reads the ARPHRD type of an interface (1 when unreadable:
// Ethernet is by far the most likely).
func arphrdOf(iface string) uint16 {
	b, err := os.ReadFile("/sys/class/net/" + iface + "/type")
	if err != nil {
		return 1
	}
	t, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 16)
	if err != nil {
		return 1
	}
	return uint16(t)
}

// Offsets in the ring (include/uapi/linux/if_packet.h): a block begins
// with its descriptor, whose tpacket_hdr_v1 holds the status word; each
// frame begins with a tpacket3_hdr, then the sockaddr_ll of its device.
const (
	blockHdrOff = 8  // tpacket_hdr_v1 in tpacket_block_desc
	frameLLOff  = 48 // sockaddr_ll after the 48-byte tpacket3_hdr
)

func (s *liveSource) blockHeader() *unix.TpacketHdrV1 {
	return (*unix.TpacketHdrV1)(unsafe.Pointer(&s.ring[s.block*s.g.blockSize+blockHdrOff]))
}

// blockReady tells whether the kernel has handed the block over.
func (s *liveSource) blockReady() bool {
	return atomic.LoadUint32(&s.blockHeader().Block_status)&unix.TP_STATUS_USER != 0
}

// release hands the block back to the kernel and moves on to the next.
func (s *liveSource) release() {
	atomic.StoreUint32(&s.blockHeader().Block_status, unix.TP_STATUS_KERNEL)
	s.block = (s.block + 1) % s.g.numBlocks
	s.owned = false
}

// next returns the next frame of the ring, or errTimeout when none came
// within pollTimeout.
func (s *liveSource) next(f *frame) error {
	waited := false
	for s.left == 0 {
		if s.owned {
			s.release()
		}
		if !s.blockReady() {
			if waited {
				return errTimeout
			}
			if err := s.wait(); err != nil {
				return err
			}
			waited = true
			continue
		}
		h := s.blockHeader()
		s.owned, s.left, s.off = true, h.Num_pkts, int(h.Offset_to_first_pkt)
		if s.down {
			s.down = false
			s.logf("-i %s: the interface is up again, capturing", s.iface)
		}
	}
	s.left--
	p, blockEnd := s.block*s.g.blockSize+s.off, (s.block+1)*s.g.blockSize
	var h *unix.Tpacket3Hdr
	if p+frameLLOff+unix.SizeofSockaddrLinklayer <= blockEnd {
		h = (*unix.Tpacket3Hdr)(unsafe.Pointer(&s.ring[p]))
	}
	if h == nil || p+int(h.Mac)+int(h.Snaplen) > blockEnd {
		s.left = 0 // a frame past the block: the kernel never writes one
		return s.next(f)
	}
	s.off += int(h.Next_offset)
	start, end := p+int(h.Mac), p+int(h.Mac)+int(h.Snaplen)
	f.data, f.ts, f.wire, f.link = s.ring[start:end], int64(h.Sec)*1e9+int64(h.Nsec), int(h.Len), s.link
	if s.link == linkAny {
		ll := (*unix.RawSockaddrLinklayer)(unsafe.Pointer(&s.ring[p+frameLLOff]))
		f.link = hatypeLink(ll.Hatype)
	}
	if s.addVLAN && h.Status&unix.TP_STATUS_VLAN_VALID != 0 && f.link == linkEthernet && len(f.data) >= 12 {
		s.putTagBack(f, h)
	}
	return nil
}

// putTagBack copies a frame whose 802.1Q tag the NIC took out, with the
// tag back after the MAC addresses (TPID 0x8100 unless the kernel says).
func (s *liveSource) putTagBack(f *frame, h *unix.Tpacket3Hdr) {
	tpid := uint16(etherVLAN)
	if h.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 && h.Hv1.Vlan_tpid != 0 {
		tpid = h.Hv1.Vlan_tpid
	}
	b := append(s.tagged[:0], f.data[:12]...)
	b = binary.BigEndian.AppendUint16(b, tpid)
	b = binary.BigEndian.AppendUint16(b, uint16(h.Hv1.Vlan_tci))
	b = append(b, f.data[12:]...)
	s.tagged = b
	f.data = b
	f.wire += 4
}

// wait parks until the kernel hands the current block over, or for at
// most pollTimeout (errTimeout). The kernel wakes the socket at every
// hand-over; the netpoller remembers a wake-up that came before the wait.
func (s *liveSource) wait() error {
	s.file.SetReadDeadline(time.Now().Add(pollTimeout))
	err := s.conn.Read(s.ready)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return s.checkInterface()
	}
	if err != nil {
		return fmt.Errorf("waiting for the capture ring: %v", err)
	}
	return nil
}

// checkInterface looks, when no frame came for pollTimeout, at whether the
// interface went down or away. When the interface goes down the kernel
// stops feeding the socket and flags it with ENETDOWN; when it comes back
// up the kernel feeds it again by itself, so httplog says so and waits.
// An interface that was removed never comes back (one made again with the
// same name is another device): that ends the capture with an error, for
// the service manager to restart httplog. It returns errTimeout otherwise.
func (s *liveSource) checkInterface() error {
	var soErr int
	var err error
	if cerr := s.conn.Control(func(fd uintptr) {
		soErr, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR) // and clears it
	}); cerr != nil || err != nil || s.ifindex == 0 {
		return errTimeout
	}
	if soErr != int(unix.ENETDOWN) && !s.down {
		return errTimeout
	}
	if _, err := net.InterfaceByIndex(s.ifindex); err != nil {
		return fmt.Errorf("-i %s: the interface was removed", s.iface)
	}
	if !s.down {
		s.down = true
		s.logf("-i %s: the interface went down; capturing resumes when it is up again", s.iface)
	}
	return errTimeout
}

// kernelStats reads the socket's counters. The kernel resets them on every
// read and keeps them in 32 bits, so they are added up here in 64 bits
// (read them at least once per 2^32 frames).
func (s *liveSource) kernelStats() kernelCounts {
	var err error
	var st *unix.TpacketStatsV3
	if cerr := s.conn.Control(func(fd uintptr) {
		st, err = unix.GetsockoptTpacketStatsV3(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	}); cerr == nil && err == nil {
		s.totals.received += uint64(st.Packets) // includes the drops
		s.totals.drops += uint64(st.Drops)
		s.totals.freezes += uint64(st.Freeze_q_cnt)
	}
	return s.totals
}

// drainTime: twice the block timeout covers the retire timer's slack.
func (s *liveSource) drainTime() time.Duration { return 2 * blockTimeout }
func (s *liveSource) describe() string         { return s.desc }

func (s *liveSource) close() {
	if s.ring != nil {
		unix.Munmap(s.ring)
		s.ring = nil
	}
	if s.file != nil {
		s.file.Close()
	} else if s.fd >= 0 {
		unix.Close(s.fd)
	}
}

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
