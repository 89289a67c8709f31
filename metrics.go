package main

// The counters. Every number of the statistics line is defined once, here:
// its name, its meaning, and who keeps it. The statistics line and the
// tests read them through one registry, and so will /metrics.
//
// Like the kernel's per-CPU statistics, each goroutine that counts keeps
// its own set and nobody else writes it; a reading sums the sets. The
// reader counts every frame in plain variables and publishes them to its
// set now and then (publishEvery), so the per-packet path does no atomic
// operation; the writer adds to its set once per batch.

import (
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
	help string // what it counts
	// outcome: one of the ends a frame read can come to; at exit the
	// outcomes add up to cPackets exactly.
	outcome bool
}

// counterDefs: one row per counter. Kept by: the reader (frames and their
// fate, the kernel's counts), the writer (lines by type, losses).
var counterDefs = [numCounters]counterDef{
	cPackets:       {"packets", "frames read from the ring or the file", false},
	cBytes:         {"bytes", "their length on the wire", false},
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
	mu   sync.Mutex
	sets []*counterSet
}

// newSet adds a set for one more counting goroutine.
func (r *registry) newSet() *counterSet {
	s := &counterSet{}
	r.mu.Lock()
	r.sets = append(r.sets, s)
	r.mu.Unlock()
	return s
}

// read sums every set. Safe while the counting goroutines run; exact once
// they have returned.
func (r *registry) read() counterValues {
	var sum counterValues
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sets {
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
