package main

// Request ↔ response pairing without reassembly (-pair, SPEC section 9).
// Each parser owns one pairTable for the connections the flow hash sends
// it: a fixed array of connection entries, an open-addressing index over
// them, and a least-recently-used list threaded through them. Each entry
// keeps a small FIFO of the request starts that wait for their response.
// Which waiting request a response start answers is decided from the TCP
// sequence and acknowledgement numbers, so that one response missing
// from the capture does not shift every later pair of the connection;
// docs/PAIRING.md explains the rule. Nothing here allocates after
// newPairTable, and no operation walks more than a bounded number of
// entries (flush, at exit, is the one full sweep).

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// pairDepth is how many request starts one connection can have waiting.
// Browsers and HTTP clients keep one request in flight per connection;
// pipelining clients rarely send more than a handful ahead. Eight fit in
// 152 bytes; when a ninth arrives the oldest is given up (see skip).
const pairDepth = 8

// expireSteps is how many idle connections one expire call may free: a
// few per packet keep pace with any connection rate the reader can
// deliver, and no call ever stops the packet path for long.
const expireSteps = 4

// Method codes of a waiting request. Only HEAD (its response has no body)
// and CONNECT (a 2xx answer turns the connection into a tunnel) change
// the pairing; all of them label the response times of /metrics and name
// a paired request's method in JSON events (pairtext.go).
const (
	methodOther uint8 = iota
	methodGET
	methodHEAD
	methodPOST
	methodPUT
	methodDELETE
	methodOPTIONS
	methodTRACE
	methodPATCH
	methodCONNECT

	methodMask  = 0x0f
	methodNoAck = 0x80 // the request's segment had no ACK flag (TCP Fast Open SYN): its ack says nothing
)

// methodOf names the method of a request start, which httpStart has
// already recognised as one of the nine.
func methodOf(b []byte) uint8 {
	if len(b) < 2 {
		return methodOther
	}
	switch b[0] {
	case 'G':
		return methodGET
	case 'H':
		return methodHEAD
	case 'P':
		switch b[1] {
		case 'O':
			return methodPOST
		case 'U':
			return methodPUT
		case 'A':
			return methodPATCH
		}
	case 'D':
		return methodDELETE
	case 'O':
		return methodOPTIONS
	case 'T':
		return methodTRACE
	case 'C':
		return methodCONNECT
	}
	return methodOther
}

// seqAfter and seqBefore compare TCP sequence numbers in serial number
// arithmetic (RFC 1982): a is after b when it lies less than 2^31 ahead,
// so comparisons stay right across the wrap past 2^32.
func seqAfter(a, b uint32) bool  { return int32(a-b) > 0 }
func seqBefore(a, b uint32) bool { return int32(a-b) < 0 }

// segment is what pairing takes from a TCP segment.
type segment struct {
	ts       int64    // capture time, Unix nanoseconds
	seq, ack uint32   // TCP sequence and acknowledgement numbers
	flags    uint8    // TCP flags
	msg      *message // the HTTP start, parsed with framing; nil for a segment without one
	size     int      // the segment's captured payload bytes
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseLength reads a Content-Length value: decimal digits only, below
// 2^40 (larger bodies are treated as of unknown length); -1 otherwise.
func parseLength(b []byte) int64 {
	if len(b) == 0 || len(b) > 12 {
		return -1
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	if n >= 1<<40 {
		return -1
	}
	return n
}

// observe is the per-packet entry point: it feeds one segment of a
// watched connection to the table — an HTTP start (kind request or
// response) and/or a SYN, FIN or RST (kind notHTTP when there is no HTTP
// start) — and lets a few idle connections expire. For a response it
// returns the capture time of the request it answers; h is the
// connection's flow hash.
func (t *pairTable) observe(src, dst netip.AddrPort, h uint32, kind msgKind, s *segment) (reqTs int64, paired bool) {
	var k pairKey
	srcLo := makePairKey(src, dst, &k)
	if s.flags&(tcpSYN|tcpACK) == tcpSYN {
		t.closed(&k, h, srcLo, tcpSYN) // a new connection on the same port pair; a TFO request follows
	}
	switch kind {
	case request:
		t.request(&k, h, srcLo, s)
	case response:
		reqTs, paired = t.response(&k, h, s)
	}
	if s.flags&(tcpFIN|tcpRST) != 0 {
		t.closed(&k, h, srcLo, s.flags&(tcpFIN|tcpRST)) // after the response it may carry
	}
	t.expire(s.ts)
	return reqTs, paired
}

// Entry flags.
const (
	fClientLo   = 1 << iota // the client is the key's lower endpoint
	fReqSeen                // reqSeq holds the newest request's sequence number
	fRespSeen               // respSeq holds the newest response's sequence number
	fRespPaired             // the newest response was paired, with the request of respTs
	fEndKnown               // end holds where the newest response ends
)

// pairEntry is one connection: 232 bytes (TestPairEntrySize keeps this
// true), plus 8 to 16 bytes of index per connection of -pair_max.
type pairEntry struct {
	key        pairKey // 36 bytes
	hash       uint32  // flow hash: the entry's home slot in the index
	seen       int64   // capture time of the connection's newest packet
	respTs     int64   // time of the request the newest response was paired with
	prev, next uint32  // LRU neighbours, newer and older (entry index + 1; 0: none); next also links the free list
	respSeq    uint32  // TCP sequence number of the newest response start
	end        uint32  // server sequence number just past the newest response, if fEndKnown
	reqSeq     uint32  // TCP sequence number of the newest request start
	skip       uint8   // requests given up on overflow whose responses are still to come
	flags      uint8
	head, n    uint8 // the waiting requests are ring slots head … head+n-1

	// The waiting requests, oldest first from head; one array per field
	// so that the entry has no padding. Their URIs and Hosts, which only
	// the JSON format needs, are kept outside the entry (pairtext.go).
	reqTs  [pairDepth]int64  // capture time of the request's first copy
	seq    [pairDepth]uint32 // its TCP sequence number
	ack    [pairDepth]uint32 // its acknowledgement number: server bytes the client had seen
	size   [pairDepth]uint16 // its captured payload bytes, at most 65535 (a lower bound is all the rule needs)
	method [pairDepth]uint8  // method code, and methodNoAck
}

// pairStats are a pairTable's counters. At exit, after flush:
//
//	request starts  (CQ+SQ) = paired + unanswered + reqCopies
//	response starts (CR+SR) = paired + unmatched + interim + respCopies
//
// paired counts final responses paired with a request (101 included),
// each request once; unanswered the requests given up (response missing,
// timeout, FIN or RST from the server, overflow, eviction, exit);
// unmatched the final responses with no request; interim the 1xx
// responses but 101 (timed when a request waits, which stays waiting);
// reqCopies the request starts not queued because their sequence number
// is not after the newest request's (retransmissions, duplicated
// frames); respCopies the response starts whose sequence number is that
// of the newest response, paired (they repeat its pairing), or of an
// older one (shown unpaired). A copy of an unpaired response is judged
// like a new one, and counted as one.
type pairStats struct {
	paired, unanswered, unmatched, evicted uint64
	interim, reqCopies, respCopies         uint64
	textsLost                              uint64 // requests queued whose URI or Host was not kept (pairtext.go)
}

// pairTable is one parser's connection table. Its memory is allocated by
// newPairTable and never grows.
type pairTable struct {
	entries        []pairEntry
	index          []uint32 // open addressing, linear probing: entry index + 1, 0 = empty
	mask           uint32   // len(index) - 1
	used           int      // entries in use
	fresh          uint32   // entries[fresh:] have never been used (so never touched: RSS grows with use)
	free           uint32   // freed entries, linked through next (entry index + 1)
	newest, oldest uint32   // ends of the LRU list (entry index + 1)
	timeout        int64    // -pair_timeout in nanoseconds
	stats          pairStats
	texts          *pairTexts // -format json: the waiting requests' URIs and Hosts; nil otherwise
	// pairedNow is what the last response given to response paired for
	// the first time answered: the request's method and the response's
	// status code, for the response time histograms of /metrics. ok is
	// false after a response that paired nothing new (a copy too).
	pairedNow struct {
		ok     bool
		method uint8
		status int
	}
}

// request queues a request start of the connection k (hash h; srcLo: the
// request comes from k's lower endpoint), unless it is a copy of one
// already seen.
func (t *pairTable) request(k *pairKey, h uint32, srcLo bool, s *segment) {
	v := t.find(k, h)
	if v == 0 {
		v = t.insert(k, h, srcLo, s.ts)
	} else {
		t.touch(v, s.ts)
	}
	e := &t.entries[v-1]
	t.dropOld(v, s.ts)
	if e.flags&fReqSeen != 0 && !seqAfter(s.seq, e.reqSeq) {
		t.stats.reqCopies++ // timed from its first copy, which is queued or was answered
		return
	}
	e.flags |= fReqSeen
	e.reqSeq = s.seq
	if e.n == pairDepth {
		t.giveUp(v)
		if e.skip < 255 {
			e.skip++
		}
	}
	i := (e.head + e.n) % pairDepth
	e.reqTs[i], e.seq[i], e.ack[i] = s.ts, s.seq, s.ack
	e.size[i] = uint16(min(s.size, 65535))
	e.method[i] = s.msg.method
	if s.flags&tcpACK == 0 {
		e.method[i] |= methodNoAck
	}
	e.n++
	t.keepTexts(v, i, s.msg)
}

// response finds the request a response start answers, and returns that
// request's capture time. A 1xx response (but 101) leaves the request
// waiting; a copy of the newest response returns what the first copy
// did. See docs/PAIRING.md for the rule.
func (t *pairTable) response(k *pairKey, h uint32, s *segment) (reqTs int64, paired bool) {
	f := s.msg
	interim := f.status >= 100 && f.status < 200 && f.status != 101
	t.pairedNow.ok = false
	v := t.find(k, h)
	if v == 0 {
		if interim {
			t.stats.interim++
		} else {
			t.stats.unmatched++
		}
		return 0, false
	}
	t.touch(v, s.ts)
	e := &t.entries[v-1]
	t.dropOld(v, s.ts)
	r := s.seq
	if e.flags&fRespSeen != 0 && !seqAfter(r, e.respSeq) {
		switch {
		case r != e.respSeq:
			t.stats.respCopies++
			return 0, false // a copy of an older response
		case e.flags&fRespPaired != 0:
			t.stats.respCopies++
			t.repeatTexts(v)
			return e.respTs, true
		}
		// A copy of a response that answered nothing is judged afresh:
		// its ack may now cover a request, as when a forged response
		// raced the real one (tcp/qi_internet_SYNACK_curl_jsonip.pcap).
	}

	chosen, reqTs, method := t.choose(v, s, interim)
	e.flags = e.flags&^fRespPaired | fRespSeen
	e.respSeq = r
	if chosen {
		e.flags |= fRespPaired
		e.respTs = reqTs
		t.pairedTexts(v, e.head, method, !interim)
	}
	switch {
	case interim:
		t.stats.interim++
	case chosen:
		t.stats.paired++
		t.pairedNow.ok, t.pairedNow.method, t.pairedNow.status = true, method, f.status
		e.head = (e.head + 1) % pairDepth
		e.n--
	default:
		t.stats.unmatched++
	}
	if f.status == 101 || chosen && method == methodCONNECT && f.status/100 == 2 {
		t.remove(v) // the connection carries no more HTTP
		return reqTs, chosen
	}
	body := f.bodyLen
	if interim || f.status == 204 || f.status == 304 || chosen && method == methodHEAD {
		body = 0
	}
	if f.hdrLen > 0 && body >= 0 && body < 1<<30 {
		e.end = r + uint32(f.hdrLen) + uint32(body)
		e.flags |= fEndKnown
	} else {
		e.flags &^= fEndKnown
	}
	return reqTs, chosen
}

// choose finds the waiting request of entry v that the response start s
// answers, giving up on the way those whose response was not captured;
// it returns that request's capture time and method. It does not take the
// request off the queue.
func (t *pairTable) choose(v uint32, s *segment, interim bool) (chosen bool, reqTs int64, method uint8) {
	e := &t.entries[v-1]
	r, a, ackValid := s.seq, s.ack, s.flags&tcpACK != 0
	// Responses follow each other back to back in the server's sequence
	// space: one that starts past the end of the previous one means a
	// response started there and was not captured. One that starts
	// before that end shows the end was wrong (a Content-Length that lied).
	gap, gapEnd := false, e.end
	if e.flags&fEndKnown != 0 {
		gap = seqAfter(r, e.end)
		if r != e.end {
			e.flags &^= fEndKnown
		}
	}
	if e.skip > 0 && !interim {
		e.skip-- // it answers a request given up on overflow
	} else {
		for e.n > 0 {
			i := e.head
			if !canAnswer(e, i, a, ackValid) {
				break // it answers a request that was not captured
			}
			missing := false
			if gap {
				// The response at gapEnd answered the front request,
				// unless the client had seen past gapEnd when sending it.
				gap = false
				missing = e.method[i]&methodNoAck != 0 || !seqAfter(e.ack[i], gapEnd)
			}
			if !missing && e.n > 1 {
				missing = frontMissed(e, a, ackValid)
			}
			if missing {
				t.giveUp(v)
				continue
			}
			return true, e.reqTs[i], e.method[i] & methodMask
		}
	}
	return false, 0, 0
}

// frontMissed applies the acknowledgement rule to the two oldest waiting
// requests: if the client saw new server data between sending the front
// request and the next one, that data was the front's response — unless
// it was the tail of the response before, which is excluded when that
// response's end is known, and cannot be when it is not and the front
// request was sent before that response began (pipelined behind it). If
// this response could answer the next request, the front's response was
// not captured.
func frontMissed(e *pairEntry, a uint32, ackValid bool) bool {
	i := e.head
	j := (i + 1) % pairDepth
	if (e.method[i]|e.method[j])&methodNoAck != 0 {
		return false
	}
	bound := e.ack[i]
	switch {
	case e.flags&fEndKnown != 0:
		if seqAfter(e.end, bound) {
			bound = e.end
		}
	case e.flags&fRespSeen != 0 && !seqAfter(bound, e.respSeq):
		return false
	}
	// That the next request was sent before the client saw this response
	// (its ack not past r) follows from the server having received it.
	return seqAfter(e.ack[j], bound) && canAnswer(e, j, a, ackValid)
}

// canAnswer reports whether a response acknowledging client bytes up to
// a can answer waiting request i: the server must have received the
// request's first segment. (That the response cannot begin before the
// server data the client had seen when sending the request follows from
// this for every response start but a retransmission of acknowledged
// data, which TCP does not send.)
func canAnswer(e *pairEntry, i uint8, a uint32, ackValid bool) bool {
	return !ackValid || !seqBefore(a, e.seq[i]+uint32(e.size[i]))
}

// closed ends the waiting on a connection when a segment says it is over:
// a RST from either side, a SYN without ACK (a client opens the same port
// pair again), or the server's FIN. The client's FIN is a half-close
// (shutdown after sending, as HTTP/1.0 clients and nc do): the server
// still answers, so its requests keep waiting.
func (t *pairTable) closed(k *pairKey, h uint32, srcLo bool, flags uint8) {
	if flags&(tcpFIN|tcpRST) == 0 && flags&(tcpSYN|tcpACK) != tcpSYN {
		return
	}
	v := t.find(k, h)
	if v == 0 {
		return
	}
	if flags&(tcpRST|tcpSYN) == 0 && srcLo == (t.entries[v-1].flags&fClientLo != 0) {
		return
	}
	t.remove(v)
}

// expire frees up to expireSteps connections idle for longer than the
// timeout, oldest first; their waiting requests are given up. Requests of
// busier connections are given up by the next packet of their connection
// (dropOld), and all at exit by flush.
func (t *pairTable) expire(now int64) {
	for i := 0; i < expireSteps && t.oldest != 0; i++ {
		v := t.oldest
		if now-t.entries[v-1].seen <= t.timeout {
			return
		}
		t.remove(v)
	}
}

// flush gives up every waiting request and empties the table (at exit).
func (t *pairTable) flush() {
	for t.oldest != 0 {
		t.remove(t.oldest)
	}
}

// dropOld gives up the waiting requests of entry v older than the timeout.
func (t *pairTable) dropOld(v uint32, now int64) {
	e := &t.entries[v-1]
	for e.n > 0 && now-e.reqTs[e.head] > t.timeout {
		t.giveUp(v)
	}
}

// giveUp drops the oldest waiting request of entry v, unanswered.
func (t *pairTable) giveUp(v uint32) {
	e := &t.entries[v-1]
	t.releaseTexts(v, e.head)
	e.head = (e.head + 1) % pairDepth
	e.n--
	t.stats.unanswered++
}

// pairEdge reports whether a segment without an HTTP start matters to
// pairing: a FIN or RST, or a SYN without ACK (a client opening the port
// pair).
func pairEdge(flags uint8) bool {
	return flags&(tcpFIN|tcpRST) != 0 || flags&(tcpSYN|tcpACK) == tcpSYN
}

// timing says whether a line ends with a response time field.
type timing uint8

const (
	untimed  timing = iota // no field: a request, or -pair off
	timed                  // the time from the request, e.g. " 18.341ms"
	unpaired               // " -": the request was not seen
)

// appendResponseTime writes the response time field of r: milliseconds
// with three decimals (microseconds, cut) and the unit, or "-".
func appendResponseTime(b []byte, r *record) []byte {
	if r.timing == unpaired {
		return append(b, ' ', '-')
	}
	b = append(b, ' ')
	us := r.rt / 1000
	if us < 0 { // a response captured before its request: clocks of two interfaces
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10), 'm', 's')
}

// pairWorker is one parser's pairing: its table and the counter set it
// publishes to the registry.
type pairWorker struct {
	table *pairTable
	set   *counterSet
}

// newPairWorkers makes one table per parser, -pair_max shared out among
// them, or returns nil without -pair. With -format json each table keeps
// its waiting requests' texts (redacted with -redact).
func newPairWorkers(cfg *Config, reg *registry) []pairWorker {
	if !cfg.Pair {
		return nil
	}
	form := cfg.lineFormat()
	pairs := make([]pairWorker, cfg.Parsers)
	for i := range pairs {
		pairs[i] = newPairWorker(max(cfg.PairMax/cfg.Parsers, 1), cfg.PairTimeout, form, reg.newSet())
	}
	return pairs
}

// newPairWorker makes one parser's pairing: a table of conns connections
// and, for the JSON format, the arena of its waiting requests' texts.
func newPairWorker(conns int, timeout time.Duration, form lineFormat, set *counterSet) pairWorker {
	pw := pairWorker{table: newPairTable(conns, timeout), set: set}
	if form.json {
		pw.table.texts = newPairTexts(len(pw.table.entries), form.redact)
	}
	return pw
}

// time feeds one item of a batch to the table. It returns false for an
// item that makes no line (a FIN, RST or SYN); for a response it sets the
// time field of rec.
func (pw *pairWorker) time(it *pktItem, payload []byte, rec *record) bool {
	s := segment{ts: it.ts, seq: it.seq, ack: it.ack, flags: it.flags, size: len(payload)}
	if it.kind != notHTTP {
		s.msg = &rec.msg // parsed with framing by the parser
	}
	reqTs, paired := pw.table.observe(it.src, it.dst, it.flow, it.kind, &s)
	rec.req = pairedRequest{} // set below for a paired response's request; only pairing sets it
	switch {
	case it.kind == notHTTP:
		return false
	case it.kind == request:
		rec.timing = untimed
	case paired:
		rec.timing, rec.rt = timed, it.ts-reqTs
		if pw.table.texts != nil {
			pw.table.texts.fillRequest(&rec.req)
		}
	default:
		rec.timing = unpaired
	}
	return true
}

// observe counts the response time of rec, a response the table has
// paired, in d (the parser's histograms); a copy of a response paired
// before is not counted again.
func (pw *pairWorker) observe(rec *record, d *durationSet) {
	if a := &pw.table.pairedNow; a.ok {
		d.observe(rec.typ, a.method, a.status, rec.rt)
	}
}

// publish hands the table's counters to the registry: after each batch
// (a few stores per batch instead of an atomic operation per packet) and
// at exit. A nil pairWorker (-pair off) does nothing.
func (pw *pairWorker) publish() {
	if pw == nil {
		return
	}
	s := &pw.table.stats
	var v counterValues
	v[cPaired], v[cUnanswered], v[cUnmatched], v[cPairEvicted] = s.paired, s.unanswered, s.unmatched, s.evicted
	v[cInterim], v[cRequestCopies], v[cResponseCopies] = s.interim, s.reqCopies, s.respCopies
	v[cTextsLost] = s.textsLost
	pw.set.publish(&v)
}

// flush gives up what still waits in the table, at exit, and publishes
// the final counts.
func (pw *pairWorker) flush() {
	if pw == nil {
		return
	}
	pw.table.flush()
	pw.publish()
}

// pairText is the start message's part for -pair: the table's size and
// its memory, all allocated now.
func pairText(cfg *Config, pairs []pairWorker) string {
	if pairs == nil {
		return ""
	}
	conns, size, texts := 0, 0, 0
	for i := range pairs {
		conns += len(pairs[i].table.entries)
		size += pairs[i].table.memory()
		if x := pairs[i].table.texts; x != nil {
			texts += x.memory()
		}
	}
	kept := ""
	if texts > 0 {
		kept = fmt.Sprintf(" (%.1f MB of it the waiting requests' URIs and Hosts, %d bytes each)", float64(texts)/1e6, pairTextSize)
	}
	return fmt.Sprintf(", pairing up to %d connections in %.1f MB%s, timeout %s", conns, float64(size)/1e6, kept, cfg.PairTimeout)
}
