package main

// The counters. Every number of the statistics line is defined once, here:
// its name, its meaning, and who keeps it. The statistics line, /metrics
// (-metrics, metrics.go) and the tests read them through one registry.
//
// Like the kernel's per-CPU statistics, each goroutine that counts keeps
// its own set and nobody else writes it; a reading sums the sets. The
// reader counts every frame in plain variables and publishes them to its
// set now and then (publishEvery), so the per-packet path does no atomic
// operation; the writer adds to its set once per batch; a parser counts
// its messages by label, and with -pair its response times, in plain
// variables and publishes those that changed after each batch. No reading
// takes a lock: the lists of sets are replaced whole when a set is added,
// never changed in place.

import (
	"cmp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// counterID names one counter.
type counterID uint8

// The counters, in the order of the statistics line. cCQ…cSR follow the
// order of lineType, so cCQ+counterID(t) is the counter of type t.
const (
	cPackets counterID = iota
	cBytes
	cCQ
	cCR
	cSQ
	cSR
	cNotHTTP
	cFragments
	cMalformed
	cUnsupported
	cKernelDrops
	cKernelFreezes
	cLeftInRing
	cWriteErrors
	cLinesLost
	cPaired // the pairing counters, from here to the end: only with -pair
	cUnanswered
	cUnmatched
	cPairEvicted
	cInterim
	cRequestCopies
	cResponseCopies
	cTextsLost
	numCounters
)

// counterDef describes a counter.
type counterDef struct {
	name string // in the statistics line
	help string // what it counts; the HELP of httplog_<name>_total in /metrics
	// outcome: one of the ends a frame read can come to; at exit the
	// outcomes add up to cPackets exactly.
	outcome bool
}

// counterDefs: one row per counter. Kept by: the reader (frames and their
// fate, the kernel's counts), the writer (lines by type, losses). In
// /metrics each is httplog_<name>_total, but CQ, CR, SQ and SR, which are
// the series of httplog_http_messages_total{type}.
var counterDefs = [numCounters]counterDef{
	cPackets:       {"packets", "frames read from the ring or the file", false},
	cBytes:         {"bytes", "length on the wire of the frames read", false},
	cCQ:            {"CQ", "request lines to a local server (written or lost)", true},
	cCR:            {"CR", "response lines of a local server (written or lost)", true},
	cSQ:            {"SQ", "request lines to a remote server (written or lost)", true},
	cSR:            {"SR", "response lines of a remote server (written or lost)", true},
	cNotHTTP:       {"not_http", "frames decoded that are not an HTTP start on a watched port", true},
	cFragments:     {"fragments", "later IP fragments: no TCP header to judge", true},
	cMalformed:     {"malformed", "frames with truncated or inconsistent headers", true},
	cUnsupported:   {"unsupported_link", "frames of a link type httplog does not decode", true},
	cKernelDrops:   {"kernel_drops", "frames the kernel dropped because the ring was full", false},
	cKernelFreezes: {"kernel_freezes", "times the kernel froze the ring's queue", false},
	cLeftInRing:    {"left_in_ring", "at exit: frames the kernel delivered that were not read", false},
	cWriteErrors:   {"write_errors", "failed write, open or close calls on log files", false},
	cLinesLost:     {"lines_lost", "lines given up, whole, after write errors", false},

	// Kept by each parser's pairing table (-pair, pairing.go). At exit
	// CQ+SQ = paired+unanswered+request_copies and
	// CR+SR = paired+unmatched+interim+response_copies.
	cPaired:         {"paired", "requests answered by a final response", false},
	cUnanswered:     {"unanswered", "requests given up: response missing, timeout, FIN or RST, overflow, eviction, exit", false},
	cUnmatched:      {"unmatched", "final responses with no request", false},
	cPairEvicted:    {"pair_evicted", "connections dropped from a full pairing table", false},
	cInterim:        {"interim", "1xx responses but 101", false},
	cRequestCopies:  {"request_copies", "request starts not queued again: retransmissions, frames seen twice", false},
	cResponseCopies: {"response_copies", "copies of a paired response, or of an older one", false},
	cTextsLost:      {"texts_lost", "with -format json: requests whose URI or Host was not kept for their response's event (no slot free, or too long)", false},
}

// counterValues is one reading of every counter.
type counterValues [numCounters]uint64

// counterSet is the counters of one goroutine. Only that goroutine
// writes them; anyone may read them at any time.
type counterSet struct {
	v [numCounters]atomic.Uint64
}

func (s *counterSet) add(id counterID, n uint64) { s.v[id].Add(n) }
func (s *counterSet) load(id counterID) uint64   { return s.v[id].Load() }

// lineCounter is the counter of the lines of type t.
func lineCounter(t lineType) counterID { return cCQ + counterID(t) }

// publish stores the values a goroutine kept in plain variables.
func (s *counterSet) publish(v *counterValues) {
	for i := range v {
		s.v[i].Store(v[i])
	}
}

// registry holds the counter sets of every counting goroutine.
type registry struct {
	mu      sync.Mutex // serialises adding sets; a reading never takes it
	sets    atomic.Pointer[[]*counterSet]
	parsers atomic.Pointer[[]*parserSet]
	// pair: the parsers pair responses with requests (-pair): their sets
	// have response time histograms, and /metrics shows the pairing
	// counters. Set before the first parser set is made.
	pair bool
}

// addSet adds s to the list *p. The list is copied, so a reading that
// holds the old one goes on undisturbed.
func addSet[T any](mu *sync.Mutex, p *atomic.Pointer[[]*T], s *T) {
	mu.Lock()
	defer mu.Unlock()
	var list []*T
	if old := p.Load(); old != nil {
		list = *old
	}
	list = append(slices.Clip(list), s)
	p.Store(&list)
}

// loadSets returns the list *p holds now.
func loadSets[T any](p *atomic.Pointer[[]*T]) []*T {
	if l := p.Load(); l != nil {
		return *l
	}
	return nil
}

// newSet adds a set for one more counting goroutine.
func (r *registry) newSet() *counterSet {
	s := &counterSet{}
	addSet(&r.mu, &r.sets, s)
	return s
}

// read sums every set. Safe while the counting goroutines run; exact once
// they have returned. It takes no lock.
func (r *registry) read() counterValues {
	var sum counterValues
	for _, s := range loadSets(&r.sets) {
		for i := range sum {
			sum[i] += s.v[i].Load()
		}
	}
	return sum
}

// isPairCounter tells the counters kept by the parsers' pairing tables
// (-pair), which the statistics line shows only with -pair.
func isPairCounter(id counterID) bool { return id >= cPaired }

// statsLine is the statistics line: every counter, by name, in order, so
// that every loss in the pipeline shows here; the pairing counters only
// with -pair, so that without it the line is the seed's.
func statsLine(v counterValues, pair bool) string {
	b := []byte("stats:")
	for id, def := range counterDefs {
		if isPairCounter(counterID(id)) && !pair {
			continue
		}
		b = append(b, ' ')
		b = append(b, def.name...)
		b = append(b, '=')
		b = strconv.AppendUint(b, v[id], 10)
	}
	return string(b)
}

// Labels of the messages' counts. Every label has a fixed few values, so
// that no label grows with the traffic (no URL, host or address).

// Request methods: the nine httpStart knows (methodGET…methodCONNECT of
// pairing.go), and _OTHER.
const numMethods = methodCONNECT + 1

var methodNames = [numMethods]string{"_OTHER", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT"}

// Status classes of responses: other (a status line without a code from
// 100 to 599), then 1xx to 5xx.
const numClasses = 6

var classNames = [numClasses]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// statusClass is the index in classNames of a status code.
func statusClass(code int) int {
	if code < 100 || code > 599 {
		return 0
	}
	return code / 100
}

// parserCounts is what a parser counts of its messages for /metrics, in
// plain variables: requests by type (CQ, SQ) and method, responses by
// type (CR, SR) and status class. The rows of the other types stay 0.
type parserCounts struct {
	requests  [numTypes][numMethods]uint64
	responses [numTypes][numClasses]uint64
	dirty     uint8 // rows counted in since the last publish: bit t requests[t], bit numTypes+t responses[t]
}

// count counts one message m of type t and kind.
func (c *parserCounts) count(t lineType, kind msgKind, m *message) {
	if kind == request {
		c.requests[t][m.method]++
		c.dirty |= 1 << t
		return
	}
	c.responses[t][statusClass(m.status)]++
	c.dirty |= 1 << (numTypes + t)
}

// parserSet is what one parser publishes for /metrics: its counts, and
// with -pair its response time histograms. Only that parser writes it.
type parserSet struct {
	requests  [numTypes][numMethods]atomic.Uint64
	responses [numTypes][numClasses]atomic.Uint64
	durations *durationSet // nil without -pair
}

// newParserSet adds a set for one more parser.
func (r *registry) newParserSet() *parserSet {
	s := &parserSet{}
	if r.pair {
		s.durations = &durationSet{}
	}
	addSet(&r.mu, &r.parsers, s)
	return s
}

// publish stores the counts that changed since the last publish: a
// batch's messages touch a few rows, and only those are looked at.
func (s *parserSet) publish(c *parserCounts) {
	for t := range c.requests {
		if c.dirty&(1<<t) != 0 {
			storeChanged(s.requests[t][:], c.requests[t][:])
		}
		if c.dirty&(1<<(int(numTypes)+t)) != 0 {
			storeChanged(s.responses[t][:], c.responses[t][:])
		}
	}
	c.dirty = 0
}

// storeChanged stores each value of src that differs from dst's. Only the
// owner stores into dst, so what it loads is what it stored last.
func storeChanged(dst []atomic.Uint64, src []uint64) {
	for i, v := range src {
		if dst[i].Load() != v {
			dst[i].Store(v)
		}
	}
}

// Response time histograms (-pair): http_server_request_duration_seconds
// for local servers (CQ to CR) and http_client_request_duration_seconds
// for remote ones (SQ to SR), by method and status code.

// durationBounds are the upper bounds of the buckets, in nanoseconds:
// OpenTelemetry's default for http.server.request.duration, 5 ms to 10 s.
var durationBounds = [...]int64{5e6, 10e6, 25e6, 50e6, 75e6, 100e6, 250e6, 500e6, 750e6, 1e9, 2.5e9, 5e9, 7.5e9, 10e9}

const (
	numBuckets = len(durationBounds) + 1 // the last one is +Inf
	// Status code labels: 100…599 at index code-100, and _OTHER for any
	// other code or none.
	statusOther = 500
	numStatus   = 501
	// maxHistograms is how many series (side, method, status code) a
	// parser can tell apart: they are numbered in a byte. Real servers
	// answer with a few dozen; when the rest are needed for the _OTHER
	// series (one per side and method), a new code counts as _OTHER.
	maxHistograms = 255
)

// histKey names a series: side 0 is the server histogram (CR), 1 the
// client one (SR); status is the status label's index.
type histKey struct {
	side, method uint8
	status       uint16
}

// histogram is one series of a parser.
type histogram struct {
	key     histKey                   // written before the series is counted in used
	buckets [numBuckets]atomic.Uint64 // observations in each bucket, not cumulative
	sum     atomic.Uint64             // nanoseconds
}

// durationSet is one parser's histograms: 45 KB, made only with -pair.
// Series are taken from hist in the order they are first seen.
type durationSet struct {
	index [2][numMethods][numStatus]uint8 // 1 + the series' place in hist; 0: none yet. The parser's alone
	used  atomic.Uint32                   // series in hist; a reading looks at hist[:used]
	hist  [maxHistograms]histogram
}

// observe counts one response time: rt nanoseconds from a request of
// method (methodOf) to its response of type t (CR or SR) with status code
// status. A negative time (the capture clock stepped back) counts as 0.
// It allocates nothing and takes no lock; only its parser calls it.
func (d *durationSet) observe(t lineType, method uint8, status int, rt int64) {
	st := statusOther
	if 100 <= status && status <= 599 {
		st = status - 100
	}
	if method >= numMethods {
		method = methodOther
	}
	h := d.series(uint8(t/2), method, st)
	b := 0
	for b < len(durationBounds) && rt > durationBounds[b] {
		b++
	}
	h.buckets[b].Add(1)
	h.sum.Add(uint64(max(rt, 0)))
}

// series returns the histogram of a series, taking the next free one for
// a series not seen before.
func (d *durationSet) series(side, method uint8, st int) *histogram {
	i := d.index[side][method][st]
	if i == 0 {
		n := d.used.Load()
		if st != statusOther && n >= maxHistograms-2*uint32(numMethods) {
			return d.series(side, method, statusOther)
		}
		d.hist[n].key = histKey{side, method, uint16(st)}
		d.used.Store(n + 1)
		i = uint8(n + 1)
		d.index[side][method][st] = i
	}
	return &d.hist[i-1]
}

// histValues is one series read, summed over the parsers.
type histValues struct {
	key     histKey
	buckets [numBuckets]uint64
	sum     uint64 // nanoseconds
}

// readDurations sums the series of every parser, in the order of side,
// method and status code.
func (r *registry) readDurations() []histValues {
	byKey := map[histKey]*histValues{}
	for _, s := range loadSets(&r.parsers) {
		d := s.durations
		if d == nil {
			continue
		}
		for i := range d.used.Load() {
			h := &d.hist[i]
			v := byKey[h.key]
			if v == nil {
				v = &histValues{key: h.key}
				byKey[h.key] = v
			}
			for j := range v.buckets {
				v.buckets[j] += h.buckets[j].Load()
			}
			v.sum += h.sum.Load()
		}
	}
	out := make([]histValues, 0, len(byKey))
	for _, v := range byKey {
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b histValues) int {
		return cmp.Or(cmp.Compare(a.key.side, b.key.side), cmp.Compare(a.key.method, b.key.method), cmp.Compare(a.key.status, b.key.status))
	})
	return out
}
