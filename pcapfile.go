package main

// Capture files: httplog's own reader of pcap and pcapng, from a file or
// a pipe. It hands out frames in place. A regular file is mapped; any
// other input is read into one fixed buffer, and a record is parsed only
// once all of its bytes are in the buffer, so a pipe that stops in the
// middle of a record never blocks the reader: the bytes stay buffered and
// the call returns errTimeout. docs/DESIGN.md says why this replaced
// gopacket's pcapgo.
//
// A regular file (opened by name, or standard input redirected from one)
// is read through a read-only shared mapping, a window of mapWindow bytes
// at a time, and its frames are handed out straight from the mapping:
// read(2) copied every byte from the page cache into the buffer, about
// half of what -r cost. A sliding window rather than one mapping of the
// whole file with the consumed part dropped by madvise(MADV_DONTNEED):
// unmapping a window takes its pages out of the process's resident set
// (the page cache keeps them), so a file of any size costs at most a
// window of memory, and of address space too (a 32-bit build maps any
// file); and moving on to the next window is the same step as reading on
// after the file grew: both look at the file's size again (mapOn). The
// window is advised MADV_SEQUENTIAL, for read-ahead. A file that shrinks
// under the mapping makes a touch of a page past its new end raise
// SIGBUS, in next or wherever the frame's bytes are read: the reader
// (capture.go) reads with debug.SetPanicOnFault on, recovers, and asks
// faulted what the fault means. A file that cannot be mapped (empty,
// or on a file system without mmap) is read with read(2), as is the rest
// of one whose next window cannot be mapped.
//
// Formats: the tcpdump.org pcap format (draft-ietf-opsawg-pcap) and pcapng
// (draft-ietf-opsawg-pcapng), each in either byte order.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"runtime/debug"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fileSource reads a pcap or pcapng capture.
type fileSource struct {
	name string
	f    *os.File    // nil for a reader given by a test
	in   io.Reader   // f, or pipe
	pipe *pipeReader // a pipe, FIFO, socket or terminal: reads wait at most pollTimeout

	buf  []byte // captureBuffer bytes, or the mapped window; buf[r:w] are read and not used yet
	r, w int
	eof  bool  // in has ended
	skip int64 // bytes to drop before the next block: the unread rest of the last one
	off  int64 // offset in the input of buf[r], for messages

	mapped bool  // buf is a window of the file f mapped, w = len(buf)
	base   int64 // while mapped: the file offset of buf[0]
	start  int64 // the file offset of the input's first byte (standard input may have been read in part)

	format int              // formatUnknown until the header has been read
	order  binary.ByteOrder // of the file, or of the pcapng section
	link   int              // pcap: the link type of every record
	scale  int64            // pcap: nanoseconds per unit of a record's fraction (1000 or 1)
	ifaces []ngInterface    // pcapng: the interfaces of the current section
}

const (
	formatUnknown = iota
	formatPcap
	formatPcapng
)

// maxFileFrame bounds the bytes of one frame: above any real snap length
// (tcpdump's is 262144). A pcap record claiming more is corrupt; a pcapng
// packet longer than this (its block says where it ends) is cut to it.
const maxFileFrame = 262144

// captureBuffer is the read buffer: large sequential reads, a few system
// calls per MiB, and room for the largest record (maxFileFrame and its
// header) wherever the previous one ended. Its size is fixed: what a file
// claims never makes the reader allocate more.
const captureBuffer = 1 << 20

// mapWindow is the most of a regular file mapped at once: what reading
// any file adds to the resident memory at most (page cache pages, which
// the kernel holds anyway). 8 MiB keeps -r's peak RSS near what the read
// buffer cost, for one fstat, mmap, madvise and munmap per 8 MiB read
// (under 1 ms per GB, nothing next to the page faults), and holds any
// record (at most captureBuffer) wherever it begins.
const mapWindow = 8 << 20

// maxInterfaces bounds the interfaces of one pcapng section (24 bytes
// each), so that a hostile file cannot make the list grow without end.
const maxInterfaces = 1 << 16

// headerWait is how long opening a pipe waits for the capture's header,
// so that the start message can name the format. After it, the header is
// waited for by the reader, which sees shutdown meanwhile.
const headerWait = 500 * time.Millisecond

// Record and block sizes.
const (
	pcapHeaderLen = 24 // file header
	pcapRecordLen = 16 // record header: seconds, fraction, captured and wire lengths
	ngMinBlock    = 12 // type, length, trailing length
	ngSHBFixed    = 24 // section header up to its options (without the trailer)
	ngIDBFixed    = 16 // interface description up to its options
	ngEPBFixed    = 28 // enhanced (and obsolete) packet block up to the data
	ngSPBFixed    = 12 // simple packet block up to the data
)

// pcapng block types.
const (
	ngSectionHeader = 0x0a0d0d0a // the same in both byte orders
	ngInterfaceDesc = 1
	ngObsoletePkt   = 2
	ngSimplePkt     = 3
	ngEnhancedPkt   = 6
	ngByteOrder     = 0x1a2b3c4d
)

// ngInterface is what httplog keeps of a pcapng interface description.
type ngInterface struct {
	link    int32
	snaplen uint32
	resol   byte  // if_tsresol: bit 7 clear, 10^-n s; set, 2^-n s
	offset  int64 // if_tsoffset: seconds added to every timestamp
}

// ngDefault stands for an interface the file does not describe: the
// packet's link is unknown, its time in microseconds as the default.
var ngDefault = ngInterface{link: -1, resol: 6}

// openFile opens a pcap or pcapng file ("-" is standard input), telling
// the formats apart by their first four bytes. A pipe's header may come
// later: then the format is known at the reader's first frame.
func openFile(name string) (*fileSource, error) {
	f := os.Stdin
	if name != "-" {
		var err error
		if f, err = openPath(name); err != nil {
			return nil, err
		}
	}
	s := newFileSource(name, f)
	if info, err := f.Stat(); err == nil && !info.Mode().IsRegular() {
		// e.g. tcpdump -w - | httplog -r -
		s.pipe = &pipeReader{f: f, deadline: time.Now().Add(headerWait)}
		s.pipe.fds[0] = unix.PollFd{Fd: int32(f.Fd()), Events: unix.POLLIN}
		s.in = s.pipe
	}
	if err := s.firstHeader(); err != nil && err != errTimeout {
		s.close()
		return nil, err
	}
	return s, nil
}

// firstHeader reads the header when the file is opened, before any
// reader runs: guarded as the reader guards its reads (reader.run), so
// that a file that shrinks at once is an error, not a crash.
// The callers name the file in their message.
func (s *fileSource) firstHeader() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			if s.faulted(v) == nil {
				panic(v)
			}
			err = shrank(s.off)
		}
	}()
	return s.readHeader()
}

// openPath opens a capture file. A FIFO is opened without waiting for a
// writer, which open(2) would do for as long as none comes; it is then
// read like a pipe, so that httplog sees shutdown meanwhile.
func openPath(name string) (*os.File, error) {
	if info, err := os.Stat(name); err != nil || info.Mode()&os.ModeNamedPipe == 0 {
		return os.Open(name)
	}
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == nil {
		if err = unix.SetNonblock(fd, false); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// newFileSource reads a capture from in, as a file: every read waits. A
// regular file is mapped if it can be; anything else is read.
func newFileSource(name string, in io.Reader) *fileSource {
	s := &fileSource{name: name, in: in}
	if f, ok := in.(*os.File); ok {
		s.f = f
		s.mapFirst()
	}
	if !s.mapped {
		s.buf = make([]byte, captureBuffer)
	}
	return s
}

// mapFirst maps the first window of f if it is a regular file, from its
// current offset. An empty file, or one mmap refuses, stays unmapped.
func (s *fileSource) mapFirst() {
	info, err := s.f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		return
	}
	start, err := s.f.Seek(0, io.SeekCurrent)
	if err != nil || start >= info.Size() {
		return
	}
	s.start = start
	s.mapped = s.mapAt(info.Size()) == nil
}

// mapAt maps the window that begins at the page of the next byte to read
// and ends mapWindow bytes later or at size, the end of the file, and
// unmaps the last one.
func (s *fileSource) mapAt(size int64) error {
	at := s.start + s.off
	base := at &^ int64(os.Getpagesize()-1)
	b, err := unix.Mmap(int(s.f.Fd()), base, int(min(size-base, mapWindow)), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	unix.Madvise(b, unix.MADV_SEQUENTIAL) // advice only: its failure changes nothing
	s.unmap()
	s.buf, s.base, s.r, s.w = b, base, int(at-base), len(b)
	return nil
}

// unmap unmaps the window, if any.
func (s *fileSource) unmap() {
	if s.mapped && s.buf != nil {
		unix.Munmap(s.buf)
		s.buf, s.r, s.w = nil, 0, 0
	}
}

// pipeReader reads a pipe without blocking past a deadline: it waits for
// data with poll(2), and returns errTimeout when none came in time.
type pipeReader struct {
	f        *os.File
	fds      [1]unix.PollFd
	deadline time.Time // zero: pollTimeout after the first wait
}

func (p *pipeReader) Read(b []byte) (int, error) {
	if p.deadline.IsZero() {
		p.deadline = time.Now().Add(pollTimeout)
	}
	for {
		wait := time.Until(p.deadline)
		ms := 0
		if wait > 0 {
			ms = int((wait + time.Millisecond - 1) / time.Millisecond)
		}
		p.fds[0].Revents = 0
		n, err := unix.Poll(p.fds[:], ms)
		if err == unix.EINTR && ms > 0 {
			continue
		}
		if err != nil && err != unix.EINTR {
			return 0, err
		}
		if n <= 0 {
			return 0, errTimeout
		}
		return p.f.Read(b)
	}
}

func (s *fileSource) next(f *frame) error {
	if s.pipe != nil {
		s.pipe.deadline = time.Time{} // each call waits at most pollTimeout
	}
	var err error
	if s.format == formatUnknown {
		err = s.readHeader()
	}
	if err == nil {
		if s.format == formatPcap {
			err = s.nextPcap(f)
		} else {
			err = s.nextPcapng(f)
		}
	}
	if err == nil || err == io.EOF || err == errTimeout {
		return err
	}
	return fmt.Errorf("-r %s: %v", s.name, err)
}

// readHeader reads the pcap file header, or checks the start of a pcapng
// section header (which nextPcapng then reads as any block).
func (s *fileSource) readHeader() error {
	err := s.fill(4)
	if err == nil {
		err = s.header()
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("not a pcap or pcapng file: too short")
	}
	return err
}

// header tells the format by the magic number at buf[r:], and reads on.
func (s *fileSource) header() error {
	magic := binary.LittleEndian.Uint32(s.buf[s.r:])
	switch magic {
	case ngSectionHeader:
		err := s.fill(ngMinBlock)
		if err == nil {
			err = s.sectionOrder()
		}
		if err == nil {
			s.format = formatPcapng
		}
		return err
	case 0xa1b2c3d4, 0xd4c3b2a1: // microseconds
		s.scale = 1000
	case 0xa1b23c4d, 0x4d3cb2a1: // nanoseconds
		s.scale = 1
	default:
		return fmt.Errorf("not a pcap or pcapng file: it begins with %#08x", binary.BigEndian.Uint32(s.buf[s.r:]))
	}
	s.order = binary.LittleEndian
	if magic&0xff == 0xa1 { // the magic's bytes in the file's order
		s.order = binary.BigEndian
	}
	if err := s.fill(pcapHeaderLen); err != nil {
		return err
	}
	return s.pcapHeader()
}

// pcapHeader reads the pcap file header, whose magic has been read.
func (s *fileSource) pcapHeader() error {
	h := s.buf[s.r : s.r+pcapHeaderLen]
	if major, minor := s.order.Uint16(h[4:]), s.order.Uint16(h[6:]); major != 2 {
		return fmt.Errorf("pcap version %d.%d is not supported (2.x is)", major, minor)
	}
	// The link type is in the low 16 bits; the FCS length, if any, above.
	s.link = int(s.order.Uint32(h[20:]) & 0xffff)
	s.format = formatPcap
	s.consume(pcapHeaderLen)
	return nil
}

// nextPcap reads a pcap record. A record longer on the capture than on
// the wire is taken as it is (libpcap does too), with the longer length.
func (s *fileSource) nextPcap(f *frame) error {
	if err := s.fill(pcapRecordLen); err != nil {
		return s.cut(err, pcapRecordLen)
	}
	caplen := s.order.Uint32(s.buf[s.r+8:])
	if caplen > maxFileFrame {
		return fmt.Errorf("corrupt file: the record at byte %d claims %d captured bytes (at most %d)", s.off, caplen, maxFileFrame)
	}
	n := pcapRecordLen + int(caplen)
	if err := s.fill(n); err != nil {
		return s.cut(err, n)
	}
	h := s.buf[s.r : s.r+n]
	f.data = h[pcapRecordLen:n:n]
	f.ts = int64(s.order.Uint32(h))*1e9 + int64(s.order.Uint32(h[4:]))*s.scale
	f.wire = int(max(caplen, s.order.Uint32(h[12:])))
	f.link = s.link
	s.consume(n)
	return nil
}

// nextPcapng reads blocks up to the next packet, taking in the section
// headers and interface descriptions on the way and skipping the rest.
func (s *fileSource) nextPcapng(f *frame) error {
	for {
		if err := s.discard(); err != nil {
			return err
		}
		if err := s.fill(ngMinBlock); err != nil {
			return s.cut(err, ngMinBlock)
		}
		b := s.buf[s.r:s.w]
		typ := s.order.Uint32(b)
		if typ == ngSectionHeader {
			if err := s.sectionOrder(); err != nil {
				return err
			}
		}
		length := s.order.Uint32(b[4:])
		if length < ngMinBlock || length%4 != 0 {
			return fmt.Errorf("corrupt file: the pcapng block at byte %d has a length of %d bytes", s.off, length)
		}
		var err error
		switch typ {
		case ngSectionHeader:
			err = s.sectionHeader(length)
		case ngInterfaceDesc:
			err = s.interfaceDesc(length)
		case ngEnhancedPkt, ngObsoletePkt, ngSimplePkt:
			return s.packet(typ, length, f)
		default:
			s.skip = int64(length)
		}
		if err != nil {
			return err
		}
	}
}

// sectionOrder reads the byte order of the section header at buf[r:].
func (s *fileSource) sectionOrder() error {
	switch bom := s.buf[s.r+8 : s.r+12]; {
	case binary.LittleEndian.Uint32(bom) == ngByteOrder:
		s.order = binary.LittleEndian
	case binary.BigEndian.Uint32(bom) == ngByteOrder:
		s.order = binary.BigEndian
	default:
		return fmt.Errorf("corrupt file: the pcapng section header at byte %d has no byte-order magic", s.off)
	}
	return nil
}

// sectionHeader begins a new section: its interfaces are its own.
func (s *fileSource) sectionHeader(length uint32) error {
	if length < ngSHBFixed+4 {
		return fmt.Errorf("corrupt file: the pcapng section header at byte %d has a length of %d bytes", s.off, length)
	}
	if err := s.fill(ngSHBFixed); err != nil {
		return s.cut(err, ngSHBFixed)
	}
	if major := s.order.Uint16(s.buf[s.r+12:]); major != 1 {
		return fmt.Errorf("pcapng version %d.%d is not supported (1.x is)", major, s.order.Uint16(s.buf[s.r+14:]))
	}
	s.ifaces = s.ifaces[:0]
	s.skip = int64(length)
	return nil
}

// interfaceDesc adds an interface to the section, with the options that
// matter for the time of its packets.
func (s *fileSource) interfaceDesc(length uint32) error {
	if length < ngIDBFixed+4 || length > captureBuffer {
		return fmt.Errorf("corrupt file: the pcapng interface description at byte %d has a length of %d bytes", s.off, length)
	}
	if len(s.ifaces) == maxInterfaces {
		return fmt.Errorf("more than %d interfaces in a pcapng section (at byte %d)", maxInterfaces, s.off)
	}
	n := int(length)
	if err := s.fill(n); err != nil {
		return s.cut(err, n)
	}
	b := s.buf[s.r : s.r+n]
	iface := ngInterface{link: int32(s.order.Uint16(b[8:])), snaplen: s.order.Uint32(b[12:]), resol: 6}
	// Options: code, length, value padded to 4 bytes; one that runs past
	// the block ends them.
	for opts := b[ngIDBFixed : n-4]; len(opts) >= 4; {
		code, size := s.order.Uint16(opts), int(s.order.Uint16(opts[2:]))
		if code == 0 || 4+size > len(opts) {
			break
		}
		switch v := opts[4 : 4+size]; {
		case code == 9 && size >= 1: // if_tsresol
			iface.resol = v[0]
		case code == 14 && size >= 8: // if_tsoffset
			iface.offset = int64(s.order.Uint64(v))
		}
		opts = opts[min(len(opts), 4+(size+3)&^3):]
	}
	s.ifaces = append(s.ifaces, iface)
	s.skip = int64(length)
	return nil
}

// packet reads an enhanced, obsolete or simple packet block. Its bytes are
// cut to maxFileFrame; the rest of a block too long for the buffer is
// skipped at the next call.
func (s *fileSource) packet(typ, length uint32, f *frame) error {
	fixed := uint32(ngEPBFixed)
	if typ == ngSimplePkt {
		fixed = ngSPBFixed
	}
	if length < fixed+4 {
		return fmt.Errorf("corrupt file: the pcapng packet block at byte %d has a length of %d bytes", s.off, length)
	}
	if err := s.fill(int(fixed)); err != nil {
		return s.cut(err, int(fixed))
	}
	b := s.buf[s.r:]
	iface, index := &ngDefault, uint32(0)
	var ts uint64
	var caplen, wire uint32
	switch typ {
	case ngSimplePkt:
		// Interface 0, no time; the block holds the packet up to the
		// interface's snap length, then padding.
		wire = s.order.Uint32(b[8:])
		caplen = min(wire, length-fixed-4)
	case ngObsoletePkt:
		index = uint32(s.order.Uint16(b[8:]))
	default:
		index = s.order.Uint32(b[8:])
	}
	if index < uint32(len(s.ifaces)) {
		iface = &s.ifaces[index]
	}
	if typ == ngSimplePkt {
		if iface.snaplen > 0 {
			caplen = min(caplen, iface.snaplen)
		}
	} else {
		ts = uint64(s.order.Uint32(b[12:]))<<32 | uint64(s.order.Uint32(b[16:]))
		caplen, wire = s.order.Uint32(b[20:]), s.order.Uint32(b[24:])
		if caplen > length-fixed-4 {
			return fmt.Errorf("corrupt file: the pcapng packet block at byte %d holds %d bytes and claims %d", s.off, length-fixed-4, caplen)
		}
	}
	// The whole block is read when it fits the buffer, so that a packet
	// is handed on only once its block is complete.
	data := int(fixed) + int(min(caplen, maxFileFrame))
	n := data
	if length <= captureBuffer {
		n = int(length)
	}
	if err := s.fill(n); err != nil {
		return s.cut(err, n)
	}
	f.data = s.buf[s.r+int(fixed) : s.r+data : s.r+data]
	f.wire = int(max(caplen, wire))
	f.link = int(iface.link)
	f.ts = 0
	if typ != ngSimplePkt {
		f.ts = ngTime(ts, iface.resol, iface.offset)
	}
	s.consume(n)
	s.skip = int64(length) - int64(n)
	return nil
}

// pow10 holds every power of ten a uint64 holds: 10^0 … 10^19.
var pow10 = [20]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// ngTime converts a pcapng timestamp of ts units of resol (if_tsresol),
// plus offset seconds (if_tsoffset), into Unix nanoseconds, rounded down.
// Every resolution works: finer than a nanosecond is divided down, and a
// time outside what int64 nanoseconds hold (1677-09-21 to 2262-04-11) is
// clamped to the first or last of them rather than wrapped around.
func ngTime(ts uint64, resol byte, offset int64) int64 {
	e := uint(resol & 0x7f)
	var sec, ns uint64 // whole seconds, and nanoseconds below 1e9
	switch {
	case resol&0x80 != 0: // 2^-e seconds
		frac := ts
		if e < 64 {
			sec, frac = ts>>e, ts&(1<<e-1)
		}
		hi, lo := bits.Mul64(frac, 1e9) // frac < 2^e, so the result < 1e9
		if e < 64 {
			ns = lo>>e | hi<<(64-e)
		} else {
			ns = hi >> (e - 64)
		}
	case e < uint(len(pow10)): // 10^-e seconds
		sec, ns = ts/pow10[e], ts%pow10[e]
		if e <= 9 {
			ns *= pow10[9-e]
		} else {
			ns /= pow10[e-9]
		}
	case e-9 < uint(len(pow10)): // finer than 10^-19 s: below 2^64 units is below a second
		ns = ts / pow10[e-9]
	}
	return unixNanos(sec, ns, offset)
}

// unixNanos is sec seconds + offset seconds + ns nanoseconds (ns < 1e9),
// clamped to int64.
func unixNanos(sec, ns uint64, offset int64) int64 {
	const (
		nsPerSec = 1_000_000_000
		maxSec   = math.MaxInt64 / nsPerSec          // the last instant: 9223372036 s
		maxNs    = math.MaxInt64 % nsPerSec          // and 854775807 ns
		minSec   = math.MinInt64/nsPerSec - 1        // the first: -9223372037 s
		minNs    = math.MinInt64%nsPerSec + nsPerSec // and 145224192 ns
	)
	var s int64
	switch {
	case sec <= math.MaxInt64 && (offset <= 0 || int64(sec) <= math.MaxInt64-offset):
		s = int64(sec) + offset
	case offset >= 0:
		return math.MaxInt64
	default: // sec above MaxInt64, offset below 0: uint64(-offset) is right even for MinInt64
		u := sec - uint64(-offset)
		if u > math.MaxInt64 {
			return math.MaxInt64
		}
		s = int64(u)
	}
	switch {
	case s > maxSec || s == maxSec && ns > maxNs:
		return math.MaxInt64
	case s < minSec || s == minSec && ns < minNs:
		return math.MinInt64
	case s >= 0:
		return s*nsPerSec + int64(ns)
	}
	return (s+1)*nsPerSec - (nsPerSec - int64(ns))
}

// fill makes n bytes (at most captureBuffer) available at buf[r:],
// reading or mapping as needed. The input ending first is io.EOF if
// nothing was buffered, else io.ErrUnexpectedEOF; a pipe that has not
// delivered them in time is errTimeout. Bytes read stay buffered for the
// next call either way.
func (s *fileSource) fill(n int) error {
	if s.w-s.r >= n {
		return nil
	}
	if s.mapped {
		return s.mapOn(n)
	}
	if s.r == s.w {
		s.r, s.w = 0, 0
	}
	for s.w-s.r < n {
		if s.eof {
			if s.r == s.w {
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
		if s.r+n > len(s.buf) {
			s.w = copy(s.buf, s.buf[s.r:s.w])
			s.r = 0
		}
		k, err := s.in.Read(s.buf[s.w:])
		s.w += k
		if err == io.EOF {
			s.eof = true
		} else if err != nil {
			return err
		}
	}
	return nil
}

// mapOn is fill for a mapped file whose window holds fewer than n bytes
// past buf[r]: it looks at the file's size again and, if the file goes on
// past the window (it may have grown since the last look), maps the next
// window; a file now shorter than the window is an error. If no window
// can be mapped, the rest is read with read(2).
func (s *fileSource) mapOn(n int) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(s.f.Fd()), &st); err != nil {
		return err
	}
	switch end := s.base + int64(len(s.buf)); {
	case st.Size < end:
		return shrank(s.off)
	case st.Size > end:
		if err := s.mapAt(st.Size); err != nil {
			return s.readOn(n)
		}
	}
	if s.w-s.r >= n {
		return nil
	}
	if s.r == s.w {
		return io.EOF
	}
	return io.ErrUnexpectedEOF
}

// readOn leaves the mapping for the read buffer, from the next byte to read.
func (s *fileSource) readOn(n int) error {
	s.unmap()
	s.mapped = false
	if _, err := s.f.Seek(s.start+s.off, io.SeekStart); err != nil {
		return err
	}
	s.buf = make([]byte, captureBuffer)
	return s.fill(n)
}

// shrank is the error of a mapped file that became shorter than what was
// mapped of it, found at byte off of the input.
func shrank(off int64) error {
	return fmt.Errorf("the file shrank while being read (at byte %d)", off)
}

// faulted tells what v, recovered by the reader from a panic, means: a
// fault in the mapping (the file shrank under it) is an error naming the
// file and the byte; anything else is not this source's (nil).
func (s *fileSource) faulted(v any) error {
	fault, ok := v.(interface{ Addr() uintptr })
	if !ok || !s.mapped {
		return nil
	}
	first := uintptr(unsafe.Pointer(unsafe.SliceData(s.buf)))
	addr := fault.Addr()
	if addr < first || addr-first >= uintptr(len(s.buf)) {
		return nil
	}
	return fmt.Errorf("-r %s: %v", s.name, shrank(s.base+int64(addr-first)-s.start))
}

// discard drops the skip bytes that are left of the last block.
func (s *fileSource) discard() error {
	for s.skip > 0 {
		if s.r == s.w {
			if err := s.fill(1); err != nil {
				if err == io.EOF {
					return fmt.Errorf("unexpected EOF: the file ends %d bytes before the end of its last pcapng block", s.skip)
				}
				return err
			}
		}
		k := int(min(s.skip, int64(s.w-s.r)))
		s.consume(k)
		s.skip -= int64(k)
	}
	return nil
}

func (s *fileSource) consume(n int) {
	s.r += n
	s.off += int64(n)
}

// cut explains a record or block that the input ended in, of which n bytes
// were wanted; an end between records, io.EOF, is passed on as it is.
func (s *fileSource) cut(err error, n int) error {
	if err == io.ErrUnexpectedEOF {
		return fmt.Errorf("unexpected EOF: the file ends inside the record at byte %d (%d of %d bytes)", s.off, s.w-s.r, n)
	}
	return err
}

func (s *fileSource) kernelStats() kernelCounts { return kernelCounts{} }
func (s *fileSource) drainTime() time.Duration  { return 0 }
func (s *fileSource) describe() string {
	switch s.format {
	case formatPcap:
		return "pcap file " + s.name
	case formatPcapng:
		return "pcapng file " + s.name
	}
	return "capture file " + s.name + " (its header has not come yet)"
}

func (s *fileSource) close() {
	s.unmap()
	if s.f != nil && s.f != os.Stdin {
		s.f.Close()
	}
}
