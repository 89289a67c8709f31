package main

// The request texts of -pair with -format json (SPEC section 10): a
// paired response's event carries its request's method, url.original and
// Host, so that it stands alone as a transaction. The method is the
// waiting request's method code (pairing.go). The target and the Host
// value are copied, when the request is queued, into a slot of a
// per-parser arena of fixed-size slots, and the slot is given back when
// the request is answered, given up or its connection freed. Only the
// JSON format allocates the arena: the text format pays nothing for it.
// Like the table, the arena is allocated at start and never grows, and
// nothing here allocates per packet.

import "unsafe"

// pairTextSize is the bytes of one slot, which holds a waiting request's
// target and Host value together. In the corpus (188 requests) the two
// take 27 bytes at the median, 146 at the 99th percentile and 275 at
// most; a Host name is at most 253 bytes (DNS) and mostly under 40. 256
// bytes keep whole all but long targets (tracking beacons, signed URLs
// not redacted), and cost 67 MB at the default -pair_max; 512 would
// double that for the few percent of requests in between.
const pairTextSize = 256

// pairTryMax bounds the targets that are redacted to see whether they
// then fit a slot (redaction shortens a signed URL by a few hundred bytes
// at most); longer ones are not kept. It bounds the scratch buffer, so
// that redacting never allocates.
const pairTryMax = 4 * pairTextSize

// textNone is the length of a text that was not kept.
const textNone = 0xffff

// textMeta describes one slot: 12 bytes.
type textMeta struct {
	gen        uint32 // times the slot was taken: a textRef that saw another gen is stale
	next       uint32 // while free: the next free slot (index + 1), 0 at the tail
	tlen, hlen uint16 // bytes of the target and of the Host value; textNone: not kept
}

// textRef names the texts of one request: its slot (index + 1; 0: none
// was kept), the slot's gen when it was taken, and the method code.
type textRef struct {
	slot, gen uint32
	method    uint8
}

// pairTexts is one parser's arena of request texts, part of its
// pairTable. There is one slot per connection of the table, so every
// connection can have one request waiting with its texts (a long poll on
// each); requests pipelined beyond that share what is free.
//
// Free slots are taken oldest-freed first (never-used slots before any),
// and a slot given back keeps its texts until it is taken again: a copy of
// a response, which comes after its request was answered, finds them
// through the entry's last reference while its gen is unchanged.
type pairTexts struct {
	buf     []byte              // the slots, pairTextSize bytes each: target, then Host value
	meta    []textMeta          // per slot
	waiting [][pairDepth]uint32 // per entry, per FIFO position: the slot (index + 1) of that waiting request, 0: none
	last    []textRef           // per entry: the request its newest paired response answered
	fresh   uint32              // slots meta[fresh:] were never taken
	head    uint32              // the free list, oldest first (index + 1; 0: empty)
	tail    uint32
	used    int                // slots held by waiting requests
	redact  *redactor          // -redact: the slot keeps the redacted target
	scratch []byte             // the redacted target, before it is copied
	answer  textRef            // the request of the response just paired (observe)
	methods [numMethods][]byte // method names by code (methodOther: nil)
}

// newPairTexts makes the arena for a table of conns entries; red is the
// redactor of -redact, or nil. Like the table's, its arrays are mapped
// outside Go's heap, and pages are touched only as they are used.
func newPairTexts(conns int, red *redactor) *pairTexts {
	x := &pairTexts{redact: red}
	// One mapping: the slots, then the arrays of 4-byte fields (the slots
	// are a multiple of 4 bytes, so each array is aligned).
	sizes := [...]int{conns * pairTextSize, conns * int(unsafe.Sizeof(textMeta{})),
		conns * int(unsafe.Sizeof([pairDepth]uint32{})), conns * int(unsafe.Sizeof(textRef{}))}
	if mem := mapOffHeap(x, sizes[0]+sizes[1]+sizes[2]+sizes[3]); mem != nil {
		x.buf = mem[:sizes[0]:sizes[0]]
		mem = mem[sizes[0]:]
		x.meta = unsafe.Slice((*textMeta)(unsafe.Pointer(&mem[0])), conns)
		mem = mem[sizes[1]:]
		x.waiting = unsafe.Slice((*[pairDepth]uint32)(unsafe.Pointer(&mem[0])), conns)
		mem = mem[sizes[2]:]
		x.last = unsafe.Slice((*textRef)(unsafe.Pointer(&mem[0])), conns)
	} else {
		x.buf, x.meta = make([]byte, sizes[0]), make([]textMeta, conns)
		x.waiting, x.last = make([][pairDepth]uint32, conns), make([]textRef, conns)
	}
	if red != nil {
		x.scratch = make([]byte, 0, scratchSize)
	}
	for code := methodGET; code < numMethods; code++ {
		x.methods[code] = []byte(methodNames[code])
	}
	return x
}

// scratchSize holds a target of pairTryMax bytes redacted (keepTarget's
// bound).
const scratchSize = 8*pairTryMax + 16

// memory is the bytes the arena holds, fixed at start. It reads only
// what its parser never writes, so it may be called while that runs.
func (x *pairTexts) memory() int {
	n := len(x.buf) + len(x.meta)*int(unsafe.Sizeof(textMeta{})) +
		len(x.waiting)*int(unsafe.Sizeof([pairDepth]uint32{})) + len(x.last)*int(unsafe.Sizeof(textRef{}))
	if x.redact != nil {
		n += scratchSize
	}
	return n
}

// take returns a free slot (index + 1), or 0 when none is.
func (x *pairTexts) take() uint32 {
	var s uint32
	switch {
	case int(x.fresh) < len(x.meta):
		x.fresh++
		s = x.fresh
	case x.head != 0:
		s = x.head
		x.head = x.meta[s-1].next
		if x.head == 0 {
			x.tail = 0
		}
	default:
		return 0
	}
	x.meta[s-1].gen++
	x.used++
	return s
}

// give puts slot s at the end of the free list; its texts stay until it
// is taken again.
func (x *pairTexts) give(s uint32) {
	x.meta[s-1].next = 0
	if x.tail != 0 {
		x.meta[x.tail-1].next = s
	} else {
		x.head = s
	}
	x.tail = s
	x.used--
}

// slot returns the bytes of slot s.
func (x *pairTexts) slot(s uint32) []byte {
	return x.buf[int(s-1)*pairTextSize : int(s)*pairTextSize]
}

// keepTexts copies the request target and the Host value of m, the
// request just queued at FIFO position i of entry v, into a free slot. A
// text that does not fit is not kept (the Host is kept before the target,
// being short), nor are both when no slot is free: the request still
// pairs, and its response's event says so. Without the arena (text
// format), it does nothing.
func (t *pairTable) keepTexts(v uint32, i uint8, m *message) {
	x := t.texts
	if x == nil {
		return
	}
	start, end := splitRequest(m.start)
	target, host := m.start[start:end], m.field1
	if x.redact != nil && len(target) <= pairTryMax {
		x.scratch = x.redact.keepTarget(x.scratch[:0], target)
		target = x.scratch
	}
	tlen, hlen := len(target), len(host)
	switch {
	case tlen+hlen <= pairTextSize:
	case hlen > 0 && hlen <= pairTextSize:
		tlen = textNone
	default:
		t.stats.textsLost++
		return
	}
	s := x.take()
	if s == 0 {
		t.stats.textsLost++
		return
	}
	if tlen == textNone {
		t.stats.textsLost++
		target = nil
	}
	b := x.slot(s)
	copy(b[copy(b, target):], host)
	x.meta[s-1].tlen, x.meta[s-1].hlen = uint16(tlen), uint16(hlen)
	x.waiting[v-1][i] = s
}

// releaseTexts gives back the slot of the request at FIFO position i of
// entry v, if it holds one, and returns a reference to its texts.
func (t *pairTable) releaseTexts(v uint32, i uint8) textRef {
	x := t.texts
	if x == nil {
		return textRef{}
	}
	s := x.waiting[v-1][i]
	if s == 0 {
		return textRef{}
	}
	x.waiting[v-1][i] = 0
	x.give(s)
	return textRef{slot: s, gen: x.meta[s-1].gen}
}

// pairedTexts records that the newest response of entry v answered the
// request at FIFO position i, of method code method: a final response
// gives the slot back, an interim one leaves it to the request, which
// still waits. Either way the response's event, and those of its copies
// while the slot is not taken again, carry the texts.
func (t *pairTable) pairedTexts(v uint32, i uint8, method uint8, final bool) {
	x := t.texts
	if x == nil {
		return
	}
	var r textRef
	if final {
		r = t.releaseTexts(v, i)
	} else if s := x.waiting[v-1][i]; s != 0 {
		r = textRef{slot: s, gen: x.meta[s-1].gen}
	}
	r.method = method
	x.last[v-1], x.answer = r, r
}

// repeatTexts: a copy of entry v's newest response repeats its pairing.
func (t *pairTable) repeatTexts(v uint32) {
	if x := t.texts; x != nil {
		x.answer = x.last[v-1]
	}
}

// forgetTexts gives back the slots of the n waiting requests of entry v,
// which is being freed, and its reference to the last answered request.
func (t *pairTable) forgetTexts(v uint32, e *pairEntry) {
	if t.texts == nil {
		return
	}
	for k := uint8(0); k < e.n; k++ {
		t.releaseTexts(v, (e.head+k)%pairDepth)
	}
	t.texts.last[v-1] = textRef{}
}

// fillRequest sets req to the texts of the request the response just
// observed was paired with. The slices point into the arena: they are
// valid until the table sees the next packet.
func (x *pairTexts) fillRequest(req *pairedRequest) {
	a := x.answer
	req.method = x.methods[a.method]
	if a.slot == 0 || x.meta[a.slot-1].gen != a.gen {
		req.truncated = true // never kept, or the slot was taken again since
		return
	}
	m, b := &x.meta[a.slot-1], x.slot(a.slot)
	if m.tlen == textNone {
		req.truncated = true
		req.host = b[:m.hlen]
		return
	}
	req.target, req.host = b[:m.tlen], b[m.tlen:m.tlen+m.hlen]
}
