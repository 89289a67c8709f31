package main

// The capture stage. Packet sources: the live AF_PACKET ring (ring.go,
// with its kernel filter in filter.go) and capture files (pcapfile.go),
// behind one small interface so that the rest of the pipeline cannot tell
// them apart; the reader goroutines that judge every frame and batch the
// HTTP starts for the parsers; and this host's addresses.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// frame is one captured frame. data belongs to the source and is valid
// only until the next call to next.
type frame struct {
	data []byte
	ts   int64 // capture time, Unix nanoseconds
	wire int   // length on the wire, >= len(data)
	link int   // link type (DLT number), see parser.go
}

// errTimeout is returned by a live source, or a capture read from a pipe,
// when no frame came within its poll timeout; the reader uses the pause to
// flush and to look at shutdown.
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

// faultingSource is a source whose frames can vanish under the reader: a
// capture file read through a mapping (pcapfile.go) that shrinks raises
// SIGBUS where a page past its new end is touched, in next or in handle,
// which would end the program. The reader reads it with faults turned
// into panics (debug.SetPanicOnFault), and recovers.
type faultingSource interface {
	// faulted returns the error that v, recovered from a panic, means, or
	// nil if v is not a fault in the source's mapping.
	faulted(v any) error
}

// catchFault, deferred with debug.SetPanicOnFault on, turns a fault in
// the mapping of fs into *err; any other panic goes on.
func catchFault(fs faultingSource, err *error) {
	if v := recover(); v != nil {
		if *err = fs.faulted(v); *err == nil {
			panic(v)
		}
	}
}

// kernelCounts are the socket's counters, added up over the run.
type kernelCounts struct {
	received uint64 // frames the filter passed: put in the ring, or dropped
	drops    uint64 // frames dropped because the ring was full
	freezes  uint64 // times the ring's queue was frozen
}

// The reader stage: one goroutine per packet source judges every frame
// in place and copies the payloads of HTTP starts into batches, one batch
// per parser, chosen by the connection's symmetric hash.

// pktBatch carries HTTP start packets from a reader to one parser.
type pktBatch struct {
	items []pktItem
	buf   []byte // the payloads, back to back
}

// pktItem is one HTTP start packet of a batch, or with -pair a FIN, RST
// or SYN without one (kind notHTTP, no payload).
type pktItem struct {
	ts       int64
	src, dst netip.AddrPort
	kind     msgKind
	flags    uint8  // TCP flags
	off, end uint32 // payload: buf[off:end]
	seq, ack uint32 // TCP sequence and acknowledgement numbers
	flow     uint32 // the connection's flow hash
}

// newPacketBatches makes the free list of n packet batches the readers
// fill and the parsers hand back. A batch's buf grows with use, to at most
// batchBytes + one payload: with -cpu 256 -s 262144 a preallocated
// maximum would be 1.3 GB.
func newPacketBatches(n int) chan *pktBatch {
	free := make(chan *pktBatch, n)
	for i := 0; i < n; i++ {
		free <- &pktBatch{items: make([]pktItem, 0, batchSize)}
	}
	return free
}

// readerConfig is what the readers of a run share.
type readerConfig struct {
	ports       []uint16      // nil: every port
	limit       int64         // stop after this many packets of all readers, if >= 0
	logEvery    uint64        // a statistics line every this many packets of a reader, if > 0
	reportEvery time.Duration // and at least this often, if > 0
	report      func()        // writes the statistics line
	pair        bool          // -pair: also hand on FIN, RST and SYN segments (pairEdge)

	// Shared by the readers of startReaders, which makes them.
	budget     *atomic.Int64 // what is left of limit; nil: no limit
	lastReport *atomic.Int64 // when the statistics line was last written, Unix nanoseconds (given: for tests)
}

// How often a reader does its bookkeeping: every publishEvery frames, and
// at every poll timeout, it hands its counts to the registry and looks at
// shutdown; once a second at most it reads the kernel's counters, so that
// they are fresh for whoever reads the registry.
const (
	publishEvery = 256
	kernelEvery  = time.Second
)

// startReaders starts a reader goroutine for each source, feeding the
// parser queues. When one reader fails, the others are stopped too. When
// the last reader has returned, the queues are closed, and the returned
// channel yields the readers' errors joined, each message once (nil if
// none).
//
// With several readers, each writes a statistics line every logEvery of
// its own packets, so the lines come about every logEvery packets of all
// together, as with one reader, with no count shared on the packet path;
// the line of a quiet link (reportEvery) is written by whichever reader
// finds it due first.
func startReaders(ctx context.Context, srcs []packetSource, c readerConfig, queues []chan *pktBatch, free chan *pktBatch, reg *registry) <-chan error {
	ctx, cancel := context.WithCancel(ctx)
	if c.limit >= 0 {
		c.budget = new(atomic.Int64)
		c.budget.Store(c.limit)
	}
	if c.lastReport == nil {
		c.lastReport = new(atomic.Int64)
		c.lastReport.Store(time.Now().UnixNano())
	}
	done := make(chan error, 1)
	errs := make([]error, len(srcs))
	var wg sync.WaitGroup
	for i, src := range srcs {
		r := newReader(src, c, readerQueues(i, len(srcs), queues), free, reg.newSet())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = r.run(ctx); errs[i] != nil {
				cancel()
			}
		}()
	}
	go func() {
		wg.Wait()
		cancel()
		for _, q := range queues {
			close(q)
		}
		done <- joinDistinct(errs)
	}()
	return done
}

// readerQueues is the parser queues reader i of n feeds. One reader
// spreads its connections over all parsers by the flow hash. Readers of a
// fanout group (n > 1) already get whole connections each, both
// directions, by the group's symmetric hash; with at least as many
// readers as parsers, reader i feeds parser i mod len(queues) alone, which
// still gives each connection one parser, fills one batch at a time
// instead of one per parser, and keeps a reader's packets with one parser
// (-readers 2 -cpu 2 at 200k packets/s: about a tenth less CPU, six
// passes, docs/BENCHMARKS.md). With fewer readers than parsers each
// reader spreads over all of them, as one reader does.
func readerQueues(i, n int, queues []chan *pktBatch) []chan *pktBatch {
	if n > 1 && n >= len(queues) {
		j := i % len(queues)
		return queues[j : j+1]
	}
	return queues
}

// joinDistinct joins errors, each message once: the readers of one
// interface fail alike when it is removed.
func joinDistinct(errs []error) error {
	var out []error
	seen := map[string]bool{}
	for _, err := range errs {
		if err != nil && !seen[err.Error()] {
			seen[err.Error()] = true
			out = append(out, err)
		}
	}
	return errors.Join(out...)
}

// reader moves frames from one source into batches for the parsers.
type reader struct {
	readerConfig
	src  packetSource
	out  []chan *pktBatch
	free chan *pktBatch
	set  *counterSet // where n is published

	watched *portSet // the ports of readerConfig, nil: every port

	cur     []*pktBatch // batch being filled, per parser
	pending bool        // some batch in cur holds packets
	oldest  int64       // capture time of the first packet pending

	n          counterValues // this reader's counts; only cPackets…cLeftInRing
	lastKernel time.Time     // when the kernel's counters were last read
}

func newReader(src packetSource, c readerConfig, out []chan *pktBatch, free chan *pktBatch, set *counterSet) *reader {
	return &reader{readerConfig: c, src: src, out: out, free: free, set: set, watched: newPortSet(c.ports),
		cur: make([]*pktBatch, len(out)), lastKernel: time.Now()}
}

// run reads until the source ends, the packet limit is reached or ctx is
// cancelled; then it hands on what it holds, closes the source, publishes
// its final counts, and returns the source's error, if any.
//
// After cancellation it goes on reading for the source's drainTime: a
// live ring still holds frames captured before the signal in a block the
// kernel has not handed over yet, and those lines must not be lost.
//
// A fault in the mapping of a faultingSource ends the run with the
// source's error, as a read error does.
func (r *reader) run(ctx context.Context) (err error) {
	defer r.finish()
	if fs, ok := r.src.(faultingSource); ok {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer catchFault(fs, &err)
	}
	var stopAt time.Time // when to stop, once cancelled
	done := func() bool {
		if stopAt.IsZero() {
			if ctx.Err() == nil {
				return false
			}
			stopAt = time.Now().Add(r.src.drainTime())
		}
		return !time.Now().Before(stopAt)
	}
	var f frame
	var p packet
	for r.budget == nil || r.budget.Load() > 0 {
		err := r.src.next(&f)
		if err == errTimeout {
			r.sendAll()
			r.bookkeeping()
			if done() {
				return nil
			}
			continue
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if r.budget != nil && r.budget.Add(-1) < 0 {
			return nil // another reader took the last packet of -c: this one stays unread
		}
		r.handle(&f, &p)
		// Counted once handled: a frame whose bytes fault is not read.
		r.n[cPackets]++
		r.n[cBytes] += uint64(f.wire)
		if r.pending && f.ts-r.oldest > maxBatchDelay {
			r.sendAll()
		}
		if r.logEvery > 0 && r.n[cPackets]%r.logEvery == 0 {
			r.readKernel()
			r.statistics()
		}
		if r.n[cPackets]%publishEvery == 0 {
			r.bookkeeping()
			if done() {
				return nil
			}
		}
	}
	return nil
}

// handle judges one frame, and copies it into a batch if it starts an
// HTTP message. It is the only per-packet work of the reader.
func (r *reader) handle(f *frame, p *packet) {
	switch decodeFrame(f.link, f.data, p) {
	case vTCP:
	case vOther:
		r.n[cNotHTTP]++
		return
	case vFragment:
		r.n[cFragments]++
		return
	case vMalformed:
		r.n[cMalformed]++
		return
	default:
		r.n[cUnsupported]++
		return
	}
	// The ports are checked again: the kernel filter passes frames with
	// a third VLAN tag and IPv6 packets with extension headers without
	// looking at their ports, and capture files have no filter.
	if !r.portMatch(p) {
		r.n[cNotHTTP]++
		return
	}
	kind := httpStart(p.payload)
	if kind == notHTTP {
		r.n[cNotHTTP]++
		// With -pair, the parser that owns a watched connection also
		// hears of its end and of its port pair being opened again.
		if !r.pair || !pairEdge(p.flags) {
			return
		}
	}
	i := int(uint64(p.flow) * uint64(len(r.out)) >> 32)
	b := r.cur[i]
	if b == nil {
		b = <-r.free
		r.cur[i] = b
		if !r.pending {
			r.pending, r.oldest = true, f.ts
		}
	}
	off := len(b.buf)
	if kind != notHTTP {
		b.buf = append(b.buf, p.payload...)
	}
	b.items = append(b.items, pktItem{
		ts:    f.ts,
		src:   netip.AddrPortFrom(addrFrom(p.src), p.sport),
		dst:   netip.AddrPortFrom(addrFrom(p.dst), p.dport),
		kind:  kind,
		flags: p.flags,
		off:   uint32(off),
		end:   uint32(len(b.buf)),
		seq:   p.seq,
		ack:   p.ack,
		flow:  p.flow,
	})
	if len(b.items) == batchSize || len(b.buf) >= batchBytes {
		r.out[i] <- b
		r.cur[i] = nil
	}
}

func (r *reader) portMatch(p *packet) bool {
	return r.watched == nil || r.watched.has(p.sport) || r.watched.has(p.dport)
}

// portSet is a set of TCP ports, one bit each: a lookup costs the same
// for a list of 2,000 ports as for one (8 KiB a reader).
type portSet [65536 / 64]uint64

// newPortSet makes the set of ports; nil for nil (every port).
func newPortSet(ports []uint16) *portSet {
	if ports == nil {
		return nil
	}
	s := &portSet{}
	for _, p := range ports {
		s[p/64] |= 1 << (p % 64)
	}
	return s
}

func (s *portSet) has(p uint16) bool { return s[p/64]&(1<<(p%64)) != 0 }

// sendAll hands every partly filled batch to its parser.
func (r *reader) sendAll() {
	for i, b := range r.cur {
		if b != nil {
			r.out[i] <- b
			r.cur[i] = nil
		}
	}
	r.pending = false
}

// bookkeeping publishes the counts, and reads the kernel's counters and
// writes the statistics line when they are due.
func (r *reader) bookkeeping() {
	now := time.Now()
	if now.Sub(r.lastKernel) >= kernelEvery {
		r.readKernel()
	}
	if r.reportEvery > 0 && reportDue(r.lastReport, now, r.reportEvery) {
		r.statistics()
		return
	}
	r.set.publish(&r.n)
}

// reportDue tells whether every has passed since the statistics line was
// last written (*last), and if so takes the turn: of readers asking at
// once, one is told yes.
func reportDue(last *atomic.Int64, now time.Time, every time.Duration) bool {
	then := last.Load()
	return now.UnixNano()-then >= int64(every) && last.CompareAndSwap(then, now.UnixNano())
}

// statistics publishes the counts and writes the statistics line.
func (r *reader) statistics() {
	r.set.publish(&r.n)
	r.report()
	r.lastReport.Store(time.Now().UnixNano())
}

// readKernel takes the kernel's counters of the source; it returns how
// many frames the kernel passed in all.
func (r *reader) readKernel() uint64 {
	k := r.src.kernelStats()
	r.n[cKernelDrops], r.n[cKernelFreezes] = k.drops, k.freezes
	r.lastKernel = time.Now()
	return k.received
}

// finish hands on the last batches, counts what the kernel delivered
// beyond what was read (still in the ring), closes the source and
// publishes the final counts.
func (r *reader) finish() {
	r.sendAll()
	if received := r.readKernel(); received > r.n[cKernelDrops]+r.n[cPackets] {
		r.n[cLeftInRing] = received - r.n[cKernelDrops] - r.n[cPackets]
	}
	r.src.close()
	r.set.publish(&r.n)
}

func addrFrom(b []byte) netip.Addr {
	if len(b) == 4 {
		return netip.AddrFrom4([4]byte(b))
	}
	return netip.AddrFrom16([16]byte(b))
}

// openSource opens the file or the interface of cfg (one socket for each
// of cfg.Readers), and returns the first local address set.
func openSource(cfg *Config, logger *log.Logger) ([]packetSource, *localSet, error) {
	if cfg.ReadFile != "" {
		src, err := openFile(cfg.ReadFile)
		if err != nil {
			return nil, nil, fmt.Errorf("-r %s: %v", cfg.ReadFile, err)
		}
		// A capture file is seen from its server unless -local says more.
		return []packetSource{src}, &localSet{all: cfg.Local == nil, prefixes: cfg.Local}, nil
	}
	if err := pickDevice(cfg); err != nil {
		return nil, nil, err
	}
	locals := &localSet{prefixes: cfg.Local}
	if cfg.Local == nil {
		var err error
		if locals, err = interfaceAddresses(cfg.Device); err != nil {
			return nil, nil, fmt.Errorf("-i %s: %v", cfg.Device, err)
		}
	}
	live, err := openLive(liveConfig{iface: cfg.Device, snaplen: cfg.Snaplen, ringMB: cfg.BufferMB, readers: cfg.Readers,
		addVLAN: cfg.AddVLAN, ports: cfg.Ports, logf: logger.Printf})
	if err != nil {
		return nil, nil, err
	}
	srcs := make([]packetSource, len(live))
	for i, s := range live {
		srcs[i] = s
	}
	return srcs, locals, nil
}

// closeSources closes the sources openSource opened.
func closeSources(srcs []packetSource) {
	for _, src := range srcs {
		src.close()
	}
}

// localSet is the set of this host's addresses, which decides CQ/CR from
// SQ/SR. all: every address counts as local (capture files).
type localSet struct {
	all      bool
	prefixes []netip.Prefix
}

func (s *localSet) contains(a netip.Addr) bool {
	if s.all {
		return true
	}
	a = a.Unmap()
	for _, p := range s.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// interfaceAddresses reads the addresses of an interface ("any": of all).
func interfaceAddresses(device string) (*localSet, error) {
	var addrs []net.Addr
	var err error
	if device == "any" {
		addrs, err = net.InterfaceAddrs()
	} else {
		var iface *net.Interface
		if iface, err = net.InterfaceByName(device); err == nil {
			addrs, err = iface.Addrs()
		}
	}
	if err != nil {
		return nil, err
	}
	s := &localSet{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				ip = ip.Unmap()
				s.prefixes = append(s.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
			}
		}
	}
	return s, nil
}

// followLocals returns the local address set the parsers read: the first
// one, followed by followAddresses on a goroutine of its own when it comes
// from the interface.
func followLocals(ctx context.Context, cfg *Config, first *localSet, logger *log.Logger) *atomic.Pointer[localSet] {
	var p atomic.Pointer[localSet]
	p.Store(first)
	if cfg.Local == nil && cfg.ReadFile == "" {
		go followAddresses(ctx, cfg.Device, &p, logger)
	}
	return &p
}

// localRefresh: how often the interface addresses are read again.
const localRefresh = 10 * time.Second

// followAddresses re-reads the interface addresses every localRefresh, so
// that CQ/CR/SQ/SR follow address changes, until ctx ends. It runs on a
// goroutine of its own, started with the capture.
func followAddresses(ctx context.Context, device string, set *atomic.Pointer[localSet], logger *log.Logger) {
	t := time.NewTicker(localRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s, err := interfaceAddresses(device)
			if err != nil {
				logger.Printf("reading the addresses of %s (keeping the last ones): %v", device, err)
				continue
			}
			set.Store(s)
		}
	}
}
