// Command httplog watches a network interface and writes one text line for
// every TCP packet that starts an HTTP request or response, into daily log
// files, without reassembling TCP: each packet is judged on its own bytes.
//
// Usage:
//
//	httplog [flags]
//
// Flags (each also set by the environment variable named; a flag wins):
//
//	-i string       interface to read from, or any (HTTPLOG_DEVICE, default eth0)
//	-p string       HTTP port(s): 80, 80,8080, or any (HTTPLOG_PORT, default 80)
//	-s int          bytes captured per packet; <= 0 means 65535 (HTTPLOG_SNAPLEN, default 1560)
//	-b int          ring buffer size in MB (HTTPLOG_BUFSIZE, default 8)
//	-cpu int        HTTP parsing goroutines (HTTPLOG_CPUNO, default 1)
//	-d string       log directory, or - for standard output (HTTPLOG_DIR, default /log/httplog)
//	-log_split      four files a day: CQ, CR, SQ, SR (HTTPLOG_LOG_SPLIT)
//	-add_vlan       put VLAN tags back into frames (HTTPLOG_ADD_VLAN)
//	-c int          if >= 0, stop after this many packets (default -1)
//	-log_every int  statistics line every this many packets (HTTPLOG_LOG_EVERY, default 10000)
//	-cpuprofile f   write a CPU profile to f
//	-r file         read a pcap or pcapng file (- = stdin) instead of an interface
//	-local list     local addresses/CIDRs for CQ/CR/SQ/SR (HTTPLOG_LOCAL)
//	-v              print the version and exit
//	-check          check the configuration, the log directory and the interface
//	                (creating and capturing nothing), print "configuration OK: ..."
//	                and exit 0; or print the error a start would, and exit 2 for a
//	                bad value, 1 for another problem
//
// A line reads
//
//	2019-09-01 14:16:51.002 223.39.188.71#50905 10.140.0.2#80 CQ GET / HTTP/1.1 host user-agent
//
// and README.md describes every field, the files, signals and statistics.
//
// The pipeline: one reader goroutine decodes frames in place and copies
// the payloads of HTTP starts into batches → bounded channels → -cpu
// parser goroutines, chosen by a symmetric hash of the connection so that
// its lines stay in order → one writer goroutine that owns the files.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole command: it returns the exit code, 2 for bad flags and
// variables, 1 for failures to start or to read, 0 otherwise.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(args, getenv, stderr)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "httplog: %v\n", err)
		return 2
	}
	if cfg.Version {
		fmt.Fprintf(stdout, "httplog version %s\n", version)
		return 0
	}
	if cfg.Check {
		summary, err := checkConfig(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "httplog: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "httplog: configuration OK: %s\n", summary)
		return 0
	}
	// -cpu is also how many CPUs httplog runs on. With more Go processors
	// than busy goroutines, the scheduler's threads wake and spin around
	// every blocking read of the ring: at -cpu 1 one processor halved the
	// CPU time per packet of a live capture (docs/BENCHMARKS.md). An
	// explicit GOMAXPROCS in the environment wins.
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(cfg.Parsers)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reopen := make(chan struct{}, 1)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGHUP {
					select {
					case reopen <- struct{}{}:
					default: // one is pending already
					}
					continue
				}
				cancel()
			case <-ctx.Done():
				return
			}
		}
	}()
	return serve(ctx, cfg, stdout, stderr, reopen)
}

// Pipeline sizes.
const (
	// batchSize packets go over a channel at once: a channel operation
	// costs about as much as parsing a packet, and 128 of them make it
	// negligible while a batch still fits in L2 cache.
	batchSize = 128
	// batchBytes caps the payload bytes of one batch (with -s 65535, 128
	// full payloads would be 8 MiB).
	batchBytes = 256 << 10
	// queueDepth batches wait for each parser, and for the writer: enough
	// to ride out a slow write, small enough that a stuck writer pushes
	// back to the kernel ring within milliseconds.
	queueDepth = 8
	// maxBatchDelay: a partly filled batch is sent on after this long, so
	// lines reach the files promptly on a quiet link.
	maxBatchDelay = int64(100 * time.Millisecond)
	// localRefresh: how often the interface addresses are read again.
	localRefresh = 10 * time.Second
)

// serve runs the pipeline until the source ends or ctx is cancelled.
func serve(ctx context.Context, cfg *Config, stdout, stderr io.Writer, reopen <-chan struct{}) int {
	logger := log.New(stderr, "httplog: ", log.LstdFlags|log.Lmsgprefix)
	fail := func(err error) int {
		fmt.Fprintf(stderr, "httplog: %v\n", err)
		return 1
	}

	if cfg.Dir != "-" {
		if _, err := checkDir(cfg.Dir, true); err != nil {
			return fail(err)
		}
	}
	src, locals, err := openSource(cfg, logger)
	if err != nil {
		return fail(err)
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			src.close()
			return fail(fmt.Errorf("-cpuprofile %s: %v", cfg.CPUProfile, err))
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	var localPtr atomic.Pointer[localSet]
	localPtr.Store(locals)
	if cfg.Local == nil && cfg.ReadFile == "" {
		go followAddresses(ctx, cfg.Device, &localPtr, logger)
	}

	// Writer.
	var wstats writerStats
	lines := make(chan *lineBatch, queueDepth)
	lineFree := make(chan *lineBatch, queueDepth+2*cfg.Parsers)
	for i := 0; i < cap(lineFree); i++ {
		lineFree <- &lineBatch{}
	}
	w := newWriter(writerConfig{dir: cfg.Dir, split: cfg.Split, out: stdout, log: logger}, &wstats)
	written := make(chan struct{})
	go func() {
		defer close(written)
		w.run(lines, lineFree, reopen)
	}()

	// Parsers.
	pktFree := make(chan *pktBatch, cfg.Parsers*(queueDepth+2))
	for i := 0; i < cap(pktFree); i++ {
		// buf grows with use, to at most batchBytes + one payload: with
		// -cpu 256 -s 262144 a preallocated maximum would be 1.3 GB.
		pktFree <- &pktBatch{items: make([]pktItem, 0, batchSize)}
	}
	queues := make([]chan *pktBatch, cfg.Parsers)
	var parsers sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan *pktBatch, queueDepth)
		parsers.Add(1)
		go func(in <-chan *pktBatch) {
			defer parsers.Done()
			parse(in, pktFree, lines, lineFree, &localPtr, newClock(cfg.Location))
		}(queues[i])
	}
	go func() {
		parsers.Wait()
		close(lines)
	}()

	// Reader.
	r := &reader{
		src: src, ports: cfg.Ports, out: queues, free: pktFree,
		limit: int64(cfg.Count), logEvery: uint64(cfg.LogEvery),
		report: func(rs *readerStats) { logger.Print(statsLine(rs, &wstats)) },
	}
	logger.Printf("httplog %s started: %s, ports %s, snaplen %d, %d parser(s) on %d CPU(s), lines to %s",
		version, src.describe(), portText(cfg.Ports), cfg.Snaplen, cfg.Parsers, runtime.GOMAXPROCS(0), destination(cfg))
	readErr := r.run(ctx)
	<-written

	logger.Print(statsLine(&r.stats, &wstats))
	if readErr != nil {
		logger.Printf("stopped: %v", readErr)
		return 1
	}
	return 0
}

// checkDir checks that dir is, or can be made, a writable directory: it,
// or else the nearest of its parents that exists, must be a directory
// this process may write into. With create, the missing part is made
// (mode 0750). It reports whether dir was missing.
func checkDir(dir string, create bool) (missing bool, err error) {
	p := dir
	for {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return false, fmt.Errorf("-d %s: %s is not a directory", dir, p)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			return false, fmt.Errorf("-d %s: %v", dir, err)
		}
		missing = true
		p = filepath.Dir(p) // ends at "/" or ".", which exist
	}
	if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
		if p == dir {
			return false, fmt.Errorf("-d %s: directory is not writable: %v", dir, err)
		}
		return false, fmt.Errorf("-d %s: cannot be created: %s is not writable: %v", dir, p, err)
	}
	if missing && create {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return false, fmt.Errorf("-d %s: %v", dir, err)
		}
	}
	return missing, nil
}

// openSource opens the file or the interface of cfg, and returns the
// first local address set.
func openSource(cfg *Config, logger *log.Logger) (packetSource, *localSet, error) {
	if cfg.ReadFile != "" {
		src, err := openFile(cfg.ReadFile)
		if err != nil {
			return nil, nil, fmt.Errorf("-r %s: %v", cfg.ReadFile, err)
		}
		// A capture file is seen from its server unless -local says more.
		return src, &localSet{all: cfg.Local == nil, prefixes: cfg.Local}, nil
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
	src, err := openLive(liveConfig{iface: cfg.Device, snaplen: cfg.Snaplen, ringMB: cfg.BufferMB, addVLAN: cfg.AddVLAN, ports: cfg.Ports, logf: logger.Printf})
	if err != nil {
		return nil, nil, err
	}
	return src, locals, nil
}

func portText(ports []uint16) string {
	if ports == nil {
		return "any"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}

func destination(cfg *Config) string {
	switch {
	case cfg.Dir == "-":
		return "standard output"
	case cfg.Split:
		return cfg.Dir + "/http-{CQ,CR,SQ,SR}-YYYYMMDD.log"
	}
	return cfg.Dir + "/http-YYYYMMDD.log"
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

// followAddresses re-reads the interface addresses every localRefresh, so
// that CQ/CR/SQ/SR follow address changes, until ctx ends.
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

// pktBatch carries HTTP start packets from the reader to one parser.
type pktBatch struct {
	items []pktItem
	buf   []byte // the payloads, back to back
}

// pktItem is one HTTP start packet of a batch.
type pktItem struct {
	ts       int64
	src, dst netip.AddrPort
	kind     msgKind
	off, end uint32 // payload: buf[off:end]
}

// readerStats are the reader's counters. Only the reader goroutine writes
// them; others read them after it has returned.
type readerStats struct {
	packets     uint64 // frames read
	bytes       uint64 // their length on the wire
	notHTTP     uint64 // decoded, but not an HTTP start on a watched port
	fragments   uint64 // later IP fragments: no TCP header to judge
	malformed   uint64 // truncated or inconsistent headers
	unsupported uint64 // frames of a link type httplog does not decode
	kernel      kernelCounts
	leftInRing  uint64 // at exit: frames the kernel delivered that were not read
}

// reader moves frames from the source into batches for the parsers.
type reader struct {
	src      packetSource
	ports    []uint16 // nil: every port
	out      []chan *pktBatch
	free     chan *pktBatch
	limit    int64  // stop after this many packets, if >= 0
	logEvery uint64 // statistics line every this many packets, if > 0
	report   func(*readerStats)

	cur     []*pktBatch // batch being filled, per parser
	pending bool        // some batch in cur holds packets
	oldest  int64       // capture time of the first packet pending
	stats   readerStats
}

// run reads until the source ends, the packet limit is reached or ctx is
// cancelled; then it hands on what it holds, closes the parser queues and
// the source, and returns the source's error, if any.
//
// After cancellation it goes on reading for the source's drainTime: a
// live ring still holds frames captured before the signal in a block the
// kernel has not handed over yet, and those lines must not be lost.
func (r *reader) run(ctx context.Context) error {
	r.cur = make([]*pktBatch, len(r.out))
	defer func() {
		r.sendAll()
		// The kernel counts every frame the filter passed, dropped or not;
		// what it delivered beyond what was read is still in the ring.
		r.stats.kernel = r.src.kernelStats()
		if k := r.stats.kernel; k.received > k.drops+r.stats.packets {
			r.stats.leftInRing = k.received - k.drops - r.stats.packets
		}
		r.src.close()
		for _, q := range r.out {
			close(q)
		}
	}()
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
	for r.limit < 0 || r.stats.packets < uint64(r.limit) {
		err := r.src.next(&f)
		if err == errTimeout {
			r.sendAll()
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
		r.stats.packets++
		r.stats.bytes += uint64(f.wire)
		r.handle(&f, &p)
		if r.pending && f.ts-r.oldest > maxBatchDelay {
			r.sendAll()
		}
		if r.logEvery > 0 && r.stats.packets%r.logEvery == 0 {
			r.stats.kernel = r.src.kernelStats()
			r.report(&r.stats)
		}
		if r.stats.packets%256 == 0 && done() {
			return nil
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
		r.stats.notHTTP++
		return
	case vFragment:
		r.stats.fragments++
		return
	case vMalformed:
		r.stats.malformed++
		return
	default:
		r.stats.unsupported++
		return
	}
	kind := httpStart(p.payload)
	// The ports are checked again: frames can reach the ring before the
	// kernel filter is attached, and capture files have no filter.
	if kind == notHTTP || !r.portMatch(p) {
		r.stats.notHTTP++
		return
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
	b.buf = append(b.buf, p.payload...)
	b.items = append(b.items, pktItem{
		ts:   f.ts,
		src:  netip.AddrPortFrom(addrFrom(p.src), p.sport),
		dst:  netip.AddrPortFrom(addrFrom(p.dst), p.dport),
		kind: kind,
		off:  uint32(off),
		end:  uint32(len(b.buf)),
	})
	if len(b.items) == batchSize || len(b.buf) >= batchBytes {
		r.out[i] <- b
		r.cur[i] = nil
	}
}

func (r *reader) portMatch(p *packet) bool {
	if r.ports == nil {
		return true
	}
	for _, port := range r.ports {
		if p.sport == port || p.dport == port {
			return true
		}
	}
	return false
}

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

func addrFrom(b []byte) netip.Addr {
	if len(b) == 4 {
		return netip.AddrFrom4([4]byte(b))
	}
	return netip.AddrFrom16([16]byte(b))
}

// parse turns packet batches into line batches until in is closed.
func parse(in <-chan *pktBatch, free chan<- *pktBatch, out chan<- *lineBatch, outFree <-chan *lineBatch, locals *atomic.Pointer[localSet], c *clock) {
	var rec record
	for b := range in {
		lb := <-outFree
		set := locals.Load()
		for i := range b.items {
			it := &b.items[i]
			parseMessage(it.kind, b.buf[it.off:it.end], &rec.msg)
			server := it.dst.Addr()
			if it.kind == response {
				server = it.src.Addr()
			}
			rec.ts, rec.src, rec.dst = it.ts, it.src, it.dst
			rec.typ = classify(it.kind, set.contains(server))
			var day uint32
			lb.buf, day = appendLine(lb.buf, &rec, c)
			lb.lines = append(lb.lines, lineRef{end: uint32(len(lb.buf)), day: day, typ: rec.typ})
		}
		b.items, b.buf = b.items[:0], b.buf[:0]
		free <- b
		out <- lb
	}
}

// statsLine is the statistics line: every loss in the pipeline shows here.
func statsLine(r *readerStats, w *writerStats) string {
	return fmt.Sprintf("stats: packets=%d bytes=%d CQ=%d CR=%d SQ=%d SR=%d not_http=%d fragments=%d malformed=%d unsupported_link=%d kernel_drops=%d kernel_freezes=%d left_in_ring=%d write_errors=%d lines_lost=%d",
		r.packets, r.bytes,
		w.lines[typeCQ].Load(), w.lines[typeCR].Load(), w.lines[typeSQ].Load(), w.lines[typeSR].Load(),
		r.notHTTP, r.fragments, r.malformed, r.unsupported, r.kernel.drops, r.kernel.freezes, r.leftInRing,
		w.writeErrors.Load(), w.lost.Load())
}
