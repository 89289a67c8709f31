package main

// The live packet source: an AF_PACKET socket with a TPACKET_V3 receive
// ring mapped into memory, read in place. capture.go holds the source
// interface and the reader stage it feeds, filter.go the kernel filter.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

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
	state   *linkState           // whether it is down, shared by the sockets of a fanout group

	block int    // the block being read, or waited for
	owned bool   // block is the reader's (TP_STATUS_USER)
	left  uint32 // frames of block not read yet
	off   int    // offset in the block of the next frame

	desc   string
	totals kernelCounts

	// halfFull, if set, is called when the reader takes a block while a
	// ring of its group is half full (behind): the governor's early
	// warning, processors.go.
	halfFull func()
	group    *ringGroup   // the sockets of its fanout group; nil: alone
	at       atomic.Int32 // block, for the other readers of the group

	deadline time.Time // of the socket's reads, as last set (wait)
}

// ringGroup is the sockets of one fanout group. Each reader watches the
// others' rings too (behind), so no ring of the group is unmapped before
// the last of its readers has closed its socket.
type ringGroup struct {
	members []*liveSource
	open    atomic.Int32 // members not closed yet
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
// through another. Each of N readers gets a Nth of the traffic, and
// blocks of at most maxBlock/N: they are handed over as often as one
// reader's, and read as soon after the kernel wrote them. Two readers
// with 1 MiB blocks woke half as often but spent as much more CPU reading
// the frames, read twice as long after the kernel wrote them
// (docs/BENCHMARKS.md).
const (
	maxBlock  = 1 << 20
	minBlocks = 8
)

// maxRingMB is the largest ring (-b) accepted. The ring is kernel memory
// that is locked while httplog runs: never swapped out, never reclaimed.
// 4096 MB holds about 34 seconds of a saturated 1 Gb/s link, 3 of a
// 10 Gb/s one: a stall longer than that needs a faster disk or more
// parsers, not a bigger ring. A machine with less than four times this
// much memory has a lower limit (ringMemoryShare).
const maxRingMB = 4096

// ringMemoryShare: the ring takes at most this share of the machine's
// physical memory, so that the server httplog watches keeps the rest.
const ringMemoryShare = 4 // a quarter

// ringFor computes the ring of each reader for a snap length, a total
// size in MiB (-b) and the number of readers that share it equally.
// A frame slot is rounded up to whole pages, as the kernel wants blocks
// to be page multiples and frames to divide blocks.
func ringFor(snaplen, megabytes, readers int) (ringGeometry, error) {
	if megabytes > maxRingMB {
		return ringGeometry{}, fmt.Errorf("-b %d: the ring takes at most %d MB", megabytes, maxRingMB)
	}
	if snaplen < 1 || snaplen > maxSnaplen {
		return ringGeometry{}, fmt.Errorf("-s %d: between 1 and %d", snaplen, maxSnaplen)
	}
	if readers < 1 || readers > maxReaders {
		return ringGeometry{}, fmt.Errorf("-readers %d: between 1 and %d", readers, maxReaders)
	}
	page := os.Getpagesize()
	frame := (snaplen + frameOverhead + page - 1) / page * page
	size := megabytes << 20 / readers // bytes of each reader's ring
	block := frame * max(1, min(maxBlock/readers, size/minBlocks)/frame)
	g := ringGeometry{frameSize: frame, blockSize: block}
	g.numBlocks = size / block
	switch {
	case megabytes > 0 && g.numBlocks >= 1:
		return g, nil
	case readers > 1:
		return g, fmt.Errorf("-b %d with -readers %d: a ring of %d KiB for each reader cannot hold one block of %d bytes (for -s %d)",
			megabytes, readers, size>>10, block, snaplen)
	}
	return g, fmt.Errorf("-b %d: a ring of %d MB cannot hold one block of %d bytes (for -s %d)",
		megabytes, megabytes, block, snaplen)
}

// checkRingMemory refuses a ring of more than ringMemoryShare of memory
// bytes, the machine's physical memory (0: read it from the kernel).
func checkRingMemory(megabytes int, memory uint64) error {
	if memory == 0 {
		var si unix.Sysinfo_t
		if err := unix.Sysinfo(&si); err != nil {
			return nil // unknown: maxRingMB is the limit
		}
		memory = uint64(si.Totalram) * uint64(si.Unit)
	}
	if megabytes > 0 && uint64(megabytes)<<20 > memory/ringMemoryShare {
		return fmt.Errorf("-b %d: a ring of %d MB is more than a quarter of this machine's memory (%d MB); the ring is locked kernel memory",
			megabytes, megabytes, memory>>20)
	}
	return nil
}

// pollTimeout bounds how long a read waits for a frame, so that the reader
// sees shutdown and flushes partial batches within this time.
const pollTimeout = 100 * time.Millisecond

// nextTick is the first multiple of pollTimeout (of the wall clock) after
// now, as a time that keeps now's monotonic reading. The readers' waits
// end there, and the governor samples there, so that on a quiet link
// httplog wakes once a pollTimeout, not once per reader and again for the
// governor: each wake-up of a sleeping thread costs the process about
// 13 µs of CPU on our test machine (estimated from profiles,
// docs/BENCHMARKS.md).
func nextTick(now time.Time) time.Time {
	return now.Add(pollTimeout - time.Duration(now.UnixNano()%int64(pollTimeout)))
}

// blockTimeout: the kernel hands a ring block to the reader when it is
// full or when its first frame is this old, so on a quiet link a frame
// waits at most this long in the ring (shutdown waits for it: see
// drainTime).
const blockTimeout = 64 * time.Millisecond

// liveConfig is what openLive needs to know.
type liveConfig struct {
	iface   string // "any" for all interfaces
	snaplen int
	ringMB  int // the ring memory of all readers together
	readers int // sockets in one fanout group; 0 or 1: one socket
	addVLAN bool
	ports   []uint16             // nil: every port
	logf    func(string, ...any) // messages about the interface
	memory  uint64               // physical memory in bytes, for the ring's limit; 0: the machine's
}

// openLive opens the capture sockets on an interface: one, or c.readers
// in one fanout group (openGroup), each with its share of the ring
// memory. A socket is SOCK_RAW, so frames keep their link-layer header
// (and the VLAN tags the NIC left in them); with "any", each frame's link
// type follows from the type of the device it was seen on.
func openLive(c liveConfig) ([]*liveSource, error) {
	readers := max(1, c.readers)
	g, err := ringFor(c.snaplen, c.ringMB, readers)
	if err != nil {
		return nil, err
	}
	if err := checkRingMemory(c.ringMB, c.memory); err != nil {
		return nil, err
	}
	s := &liveSource{fd: -1, link: linkAny, addVLAN: c.addVLAN, g: g, iface: c.iface, logf: c.logf, state: &linkState{}}
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
	failed := func(err error) error {
		if errors.Is(err, unix.EPERM) {
			return errNeedsRoot(c.iface)
		}
		return fmt.Errorf("-i %s: %v", c.iface, err)
	}
	if readers == 1 {
		if err := s.open(ifindex, prog); err != nil {
			s.close()
			return nil, failed(err)
		}
		s.desc = fmt.Sprintf("interface %s (AF_PACKET, TPACKET_V3, ring %d MB = %d blocks of %d KiB, frame %d, filter %d instructions)",
			c.iface, c.ringMB, g.numBlocks, g.blockSize>>10, g.frameSize, len(prog))
		return []*liveSource{s}, nil
	}
	srcs, id, err := openGroup(s, readers, prog)
	if err != nil {
		return nil, failed(err)
	}
	desc := fmt.Sprintf("interface %s (AF_PACKET, TPACKET_V3, %d readers in fanout group %d, by a symmetric hash of the connection; "+
		"-b %d MB split: a ring of %d KiB = %d blocks of %d KiB each, frame %d, filter %d instructions)",
		c.iface, readers, id, c.ringMB, g.numBlocks*g.blockSize>>10, g.numBlocks, g.blockSize>>10, g.frameSize, len(prog))
	for _, s := range srcs {
		s.desc = desc
	}
	return srcs, nil
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
	if err := s.prepare(ifindex, prog); err != nil {
		return err
	}
	return s.start()
}

// prepare makes the socket, attaches the filter prog, maps the ring and
// binds the socket to the interface, in that order. The socket is made
// with protocol 0, so it receives nothing before it is bound.
func (s *liveSource) prepare(ifindex int, prog []bpf.RawInstruction) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("opening an AF_PACKET socket: %w", err)
	}
	s.fd = fd
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("asking for TPACKET_V3: %v", err)
	}
	if err := attachFilter(fd, prog); err != nil {
		return err
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
	return nil
}

// attachFilter attaches a classic BPF program to a socket as its filter,
// in place of the one it had.
func attachFilter(fd int, prog []bpf.RawInstruction) error {
	fprog := sockFprog(prog)
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("attaching the kernel filter: %v", err)
	}
	return nil
}

// sockFprog is a classic BPF program in the kernel's form.
func sockFprog(prog []bpf.RawInstruction) unix.SockFprog {
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
}

// start hands the prepared socket to the netpoller. The socket is
// non-blocking, so os.NewFile registers it.
func (s *liveSource) start() error {
	fd := s.fd
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

// headerAt is the header of block i; blockHeader, of the current block.
func (s *liveSource) headerAt(i int) *unix.TpacketHdrV1 {
	return (*unix.TpacketHdrV1)(unsafe.Pointer(&s.ring[i*s.g.blockSize+blockHdrOff]))
}

func (s *liveSource) blockHeader() *unix.TpacketHdrV1 { return s.headerAt(s.block) }

// blockReady tells whether the kernel has handed the block over.
func (s *liveSource) blockReady() bool {
	return s.statusAt(s.block)&unix.TP_STATUS_USER != 0
}

// statusAt reads the status word of block i.
func (s *liveSource) statusAt(i int) uint32 {
	return atomic.LoadUint32(&s.headerAt(i).Block_status)
}

// release hands the block back to the kernel and moves on to the next.
func (s *liveSource) release() {
	atomic.StoreUint32(&s.blockHeader().Block_status, unix.TP_STATUS_KERNEL)
	s.block = (s.block + 1) % s.g.numBlocks
	s.owned = false
	s.at.Store(int32(s.block))
}

// behind tells whether this ring, or another of its fanout group, is half
// full: the block half a ring ahead of the one its reader is at has been
// handed over too. The other rings are looked at as well because their
// readers may not be able to tell: on one busy Go processor, a reader
// parked in the netpoller is woken only when the processor runs out of
// work, or by the runtime's 10 ms poll, and at a high rate its ring can
// fill meanwhile.
func (s *liveSource) behind() bool {
	if s.group == nil {
		return s.halfFullAt(s.block)
	}
	for _, r := range s.group.members {
		if r.halfFullAt(int(r.at.Load())) {
			return true
		}
	}
	return false
}

// halfFullAt tells whether the block half a ring ahead of block is ready.
func (s *liveSource) halfFullAt(block int) bool {
	n := s.g.numBlocks
	return n > 1 && s.statusAt((block+n/2)%n)&unix.TP_STATUS_USER != 0
}

// next returns the next frame of the ring, or errTimeout when none came
// by the next tick (nextTick: within pollTimeout).
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
		// After a wait the netpoller has just woken this reader, and with
		// it every reader whose ring had a block: the rings are watched
		// when a reader goes from block to block without waiting, which
		// is when the others may be left parked.
		if s.halfFull != nil && !waited && s.behind() {
			s.halfFull()
		}
		if s.state.down.Load() {
			s.checkUp()
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

// wait parks until the kernel hands the current block over, or until the
// next tick, at most pollTimeout (errTimeout). The kernel wakes the socket
// at every hand-over; the netpoller remembers a wake-up that came before
// the wait. The deadline is set again only once it has passed: a busy
// reader waits many times a tick.
func (s *liveSource) wait() error {
	if now := time.Now(); !now.Before(s.deadline) {
		s.deadline = nextTick(now)
		s.file.SetReadDeadline(s.deadline)
	}
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
// up the kernel feeds it again by itself, so httplog says so and waits
// (checkUp). An ENETDOWN read when the interface is up again is of a
// flap already over, or one another socket of the group has seen and
// said. An interface that was removed never comes back (one made again
// with the same name is another device): that ends the capture with an
// error, for the service manager to restart httplog. It returns
// errTimeout otherwise.
func (s *liveSource) checkInterface() error {
	var soErr int
	var err error
	if cerr := s.conn.Control(func(fd uintptr) {
		soErr, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR) // and clears it
	}); cerr != nil || err != nil || s.ifindex == 0 {
		return errTimeout
	}
	if soErr != int(unix.ENETDOWN) && !s.state.down.Load() {
		return errTimeout
	}
	iface, err := net.InterfaceByIndex(s.ifindex)
	if err != nil {
		return fmt.Errorf("-i %s: the interface was removed", s.iface)
	}
	if soErr == int(unix.ENETDOWN) && iface.Flags&net.FlagUp == 0 && s.state.down.CompareAndSwap(false, true) {
		s.logf("-i %s: the interface went down; capturing resumes when it is up again", s.iface)
	}
	return errTimeout
}

// checkUp says, when a block comes while the interface was down, that it
// is up again: once, from whichever socket of the group gets a block
// first. A block filled before the interface went down can still come
// while it is down; that says nothing.
func (s *liveSource) checkUp() {
	iface, err := net.InterfaceByIndex(s.ifindex)
	if err == nil && iface.Flags&net.FlagUp != 0 && s.state.down.CompareAndSwap(true, false) {
		s.logf("-i %s: the interface is up again, capturing", s.iface)
	}
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

// close closes the socket and unmaps the ring; in a group, the last
// member to close unmaps every ring of the group.
func (s *liveSource) close() {
	rings := []*liveSource{s}
	if s.group != nil {
		rings = nil
		if s.group.open.Add(-1) == 0 {
			rings = s.group.members
		}
	}
	for _, r := range rings {
		if r.ring != nil {
			unix.Munmap(r.ring)
			r.ring = nil
		}
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
