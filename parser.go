package main

// The packet path, as pure functions: frame bytes → TCP endpoints and
// payload (decodeFrame) → HTTP start line and two header values
// (parseMessage) → one escaped line, text or JSON (appendLine in
// format.go, appendJSON in json.go). Nothing here does
// I/O or keeps global state, and nothing allocates once the caller's
// buffers have grown to their working size. At the end of the file, the
// parser stage that runs them on its goroutines.

import (
	"bytes"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// Link types (DLT numbers as pcap and pcapng files carry them). The live
// socket produces linkEthernet, or linkRaw for devices without a link
// header (tun, ppp, IP tunnels).
const (
	linkNull      = 0   // BSD loopback: 4-byte address family, host byte order
	linkEthernet  = 1   // Ethernet II, any number of 802.1Q/802.1ad tags
	linkRaw       = 101 // raw IPv4 or IPv6, told apart by the version nibble
	linkLoop      = 108 // OpenBSD loopback: like linkNull, network byte order
	linkLinuxSLL  = 113 // Linux cooked capture v1
	linkNFLog     = 239 // Linux netfilter NFLOG
	linkIPv4      = 228 // raw IPv4
	linkIPv6      = 229 // raw IPv6
	linkLinuxSLL2 = 276 // Linux cooked capture v2
)

// verdict says what decodeFrame found in a frame.
type verdict uint8

const (
	vTCP         verdict = iota // a TCP segment; packet is filled in
	vOther                      // well-formed, but not TCP over IP (ARP, UDP, ESP, …)
	vFragment                   // a later IP fragment: no TCP header to judge
	vMalformed                  // truncated or inconsistent headers
	vUnsupported                // a link type httplog does not decode
)

// packet is what decodeFrame finds in one frame. Its slices point into the
// frame, so it is valid only as long as the frame is.
type packet struct {
	src, dst     []byte // 4 or 16 address bytes
	sport, dport uint16
	payload      []byte // TCP payload, ending where the IP length says
	flow         uint32 // symmetric hash of the connection: same both ways
	seq, ack     uint32 // TCP sequence and acknowledgement numbers
	flags        uint8  // TCP flags (tcpFIN, tcpSYN, tcpRST, tcpACK, …)
}

// TCP flags, as in the 14th byte of the TCP header.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// Ethernet types met in front of IP.
const (
	etherIPv4   = 0x0800
	etherIPv6   = 0x86dd
	etherVLAN   = 0x8100 // 802.1Q
	etherQinQ   = 0x88a8 // 802.1ad
	etherQinQv1 = 0x9100 // pre-standard QinQ, still seen on old switches
)

// decodeFrame finds the TCP segment in a frame of the given link type.
func decodeFrame(link int, frame []byte, p *packet) verdict {
	switch link {
	case linkEthernet:
		if len(frame) < 14 {
			return vMalformed
		}
		off, etype := 14, binary.BigEndian.Uint16(frame[12:])
		for etype == etherVLAN || etype == etherQinQ || etype == etherQinQv1 {
			if len(frame) < off+4 {
				return vMalformed
			}
			etype = binary.BigEndian.Uint16(frame[off+2:])
			off += 4
		}
		return decodeEtherType(etype, frame[off:], p)
	case linkRaw:
		return decodeIP(frame, p)
	case linkIPv4:
		return decodeIPVersion(4, frame, p)
	case linkIPv6:
		return decodeIPVersion(6, frame, p)
	case linkNull, linkLoop:
		if len(frame) < 4 {
			return vMalformed
		}
		// The family is in the byte order of the machine that wrote the
		// file (NULL) or big-endian (LOOP); the IP version nibble after it
		// says the same with less guessing.
		return decodeIP(frame[4:], p)
	case linkLinuxSLL:
		if len(frame) < 16 {
			return vMalformed
		}
		return decodeEtherType(binary.BigEndian.Uint16(frame[14:]), frame[16:], p)
	case linkLinuxSLL2:
		if len(frame) < 20 {
			return vMalformed
		}
		return decodeEtherType(binary.BigEndian.Uint16(frame[0:]), frame[20:], p)
	case linkNFLog:
		return decodeNFLog(frame, p)
	}
	return vUnsupported
}

// decodeEtherType decodes what an EtherType announces; an IP header whose
// version disagrees with it is malformed.
func decodeEtherType(etype uint16, b []byte, p *packet) verdict {
	switch etype {
	case etherIPv4:
		return decodeIPVersion(4, b, p)
	case etherIPv6:
		return decodeIPVersion(6, b, p)
	}
	return vOther
}

func decodeIPVersion(version byte, b []byte, p *packet) verdict {
	if len(b) < 1 || b[0]>>4 != version {
		return vMalformed
	}
	return decodeIP(b, p)
}

// decodeNFLog walks the TLVs of an NFLOG record to its payload attribute.
// TLV lengths are in the byte order of the capturing host; like libpcap we
// read them as little-endian, the order of every Linux host in practice.
func decodeNFLog(b []byte, p *packet) verdict {
	const nfulaPayload = 9
	if len(b) < 4 {
		return vMalformed
	}
	for off := 4; off+4 <= len(b); {
		n := int(binary.LittleEndian.Uint16(b[off:]))
		typ := binary.LittleEndian.Uint16(b[off+2:]) & 0x7fff // top bit: nested flag
		if n < 4 || off+n > len(b) {
			return vMalformed
		}
		if typ == nfulaPayload {
			return decodeIP(b[off+4:off+n], p)
		}
		off += (n + 3) &^ 3 // attributes are padded to 4 bytes
	}
	return vOther
}

// decodeIP decodes an IPv4 or IPv6 packet, told apart by its version nibble.
func decodeIP(b []byte, p *packet) verdict {
	if len(b) < 1 {
		return vMalformed
	}
	switch b[0] >> 4 {
	case 4:
		return decodeIPv4(b, p)
	case 6:
		return decodeIPv6(b, p)
	}
	return vMalformed
}

func decodeIPv4(b []byte, p *packet) verdict {
	if len(b) < 20 {
		return vMalformed
	}
	hl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if hl < 20 || len(b) < hl {
		return vMalformed
	}
	switch {
	case total == 0:
		// Segmentation offload hands the socket packets whose length
		// field is not filled in yet; the captured bytes are the packet.
	case total < hl:
		return vMalformed
	case total < len(b):
		b = b[:total] // the rest is link-layer padding, never payload
	}
	if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
		return vFragment
	}
	if b[9] != 6 {
		return vOther
	}
	p.src, p.dst = b[12:16], b[16:20]
	return decodeTCP(b[hl:], p)
}

// IPv6 next-header values that decodeIPv6 steps over.
const (
	ip6HopByHop = 0
	ip6Routing  = 43
	ip6Fragment = 44
	ip6AH       = 51
	ip6DestOpts = 60
	ip6Mobility = 135
	ip6HIP      = 139
	ip6Shim6    = 140
)

func decodeIPv6(b []byte, p *packet) verdict {
	if len(b) < 40 {
		return vMalformed
	}
	if n := 40 + int(binary.BigEndian.Uint16(b[4:])); n > 40 && n < len(b) {
		b = b[:n] // padding; a zero length (jumbogram, offload) keeps all
	}
	next, off := b[6], 40
	for {
		switch next {
		case 6:
			p.src, p.dst = b[8:24], b[24:40]
			return decodeTCP(b[off:], p)
		case ip6HopByHop, ip6Routing, ip6DestOpts, ip6Mobility, ip6HIP, ip6Shim6:
			if len(b) < off+2 {
				return vMalformed
			}
			next, off = b[off], off+(int(b[off+1])+1)*8
		case ip6AH:
			if len(b) < off+2 {
				return vMalformed
			}
			next, off = b[off], off+(int(b[off+1])+2)*4
		case ip6Fragment:
			if len(b) < off+8 {
				return vMalformed
			}
			if binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0 {
				return vFragment
			}
			next, off = b[off], off+8
		default:
			return vOther // UDP, ICMPv6, ESP, no next header, …
		}
		if off > len(b) {
			return vMalformed
		}
	}
}

func decodeTCP(b []byte, p *packet) verdict {
	if len(b) < 20 {
		return vMalformed
	}
	hl := int(b[12]>>4) * 4
	if hl < 20 || hl > len(b) {
		return vMalformed
	}
	p.sport = binary.BigEndian.Uint16(b[0:])
	p.dport = binary.BigEndian.Uint16(b[2:])
	p.seq = binary.BigEndian.Uint32(b[4:])
	p.ack = binary.BigEndian.Uint32(b[8:])
	p.flags = b[13]
	p.payload = b[hl:]
	p.flow = flowHash(p.src, p.dst, p.sport, p.dport)
	return vTCP
}

// flowHash gives both directions of a connection the same value: each
// endpoint is mixed on its own and the two are added, which does not care
// which is the source. Each endpoint's mix is a bijection of its address
// and port for IPv4 (the port above the address, then multiplications by
// odd constants and xor-shifts), so that no client's port can cancel bits
// of its address: XOR-ing the raw fields did, and clients numbered in
// sequence with ports in sequence (a NAT pool, a load generator) fell on
// a few thousand values, which made long probe runs in the pairing
// table's index (TestFlowHashSpreads).
func flowHash(src, dst []byte, sport, dport uint16) uint32 {
	h := endpointMix(src, sport) + endpointMix(dst, dport)
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	return uint32(h >> 32)
}

// endpointMix mixes an address (4 or 16 bytes) and a port.
func endpointMix(addr []byte, port uint16) uint64 {
	h := uint64(port) << 32
	for i := 0; i+4 <= len(addr); i += 4 {
		h = (h ^ uint64(binary.BigEndian.Uint32(addr[i:]))) * 0xff51afd7ed558ccd
		h ^= h >> 32
	}
	return h
}

// msgKind tells a request from a response.
type msgKind uint8

const (
	notHTTP msgKind = iota
	request
	response
)

// httpStart says whether a TCP payload begins an HTTP request (one of the
// nine methods, then a space) or a response ("HTTP/"). The first byte
// rejects almost every other payload with one comparison.
func httpStart(b []byte) msgKind {
	if len(b) < 4 {
		return notHTTP
	}
	var m string
	switch b[0] {
	case 'G':
		m = "GET "
	case 'P':
		switch b[1] {
		case 'O':
			m = "POST "
		case 'U':
			m = "PUT "
		case 'A':
			m = "PATCH "
		}
	case 'H':
		if b[1] == 'T' {
			if bytes.HasPrefix(b, []byte("HTTP/")) {
				return response
			}
			return notHTTP
		}
		m = "HEAD "
	case 'D':
		m = "DELETE "
	case 'O':
		m = "OPTIONS "
	case 'T':
		m = "TRACE "
	case 'C':
		m = "CONNECT "
	}
	if m != "" && len(b) >= len(m) && string(b[:len(m)]) == m {
		return request
	}
	return notHTTP
}

// message holds what a log line and pairing take from an HTTP start
// packet: each start is read once, here. Its slices point into the payload.
type message struct {
	start   []byte // request or status line, without its line end
	field1  []byte // Host (request) or Content-Length (response)
	field2  []byte // User-Agent (request) or Content-Type (response)
	method  uint8  // a request's method (methodOf)
	status  int    // a response's status code, -1 when its status line has none (parseStatus)
	version []byte // a response's HTTP version ("1.1"), nil when not one

	// A response's own length, for pairing: the bytes up to and
	// including the empty line after the headers, 0 when the captured
	// bytes end first (or, without framing, when the scan stopped at
	// its two headers first); and, only with framing, the body's
	// Content-Length, -1 when the length is not given (chunked, until
	// close, invalid).
	hdrLen  int
	bodyLen int64
}

// parseMessage cuts the start line and the two header values of kind out
// of an HTTP start packet. Only the header block of the packet is looked
// at: up to the first empty line or the end of the captured bytes; with
// framing, a response's header block is read to its end for its length
// (pairing needs it; the line alone stops at its two headers).
//
// A Transfer-Encoding header makes the body's length unknown, as it
// overrides Content-Length (RFC 9112 section 6.3), and so do two
// Content-Length values that disagree.
func parseMessage(kind msgKind, b []byte, m *message, framing bool) {
	line, rest := nextLine(b)
	*m = message{start: line, status: -1, bodyLen: -1}
	name1, name2 := "host", "user-agent"
	if kind == response {
		name1, name2 = "content-length", "content-type"
		m.version, m.status = parseStatus(line)
	} else {
		m.method = methodOf(line)
		framing = false
	}
	length, chunked, bad := int64(-1), false, false // framing
	found1, found2 := false, false
	for len(rest) > 0 && (framing || !(found1 && found2)) {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			m.hdrLen = len(b) - len(rest) // end of the header block
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := line[:colon]
		switch {
		case !found1 && equalFold(name, name1):
			m.field1, found1 = trimBlank(line[colon+1:]), true
		case !found2 && equalFold(name, name2):
			m.field2, found2 = trimBlank(line[colon+1:]), true
		}
		if !framing {
			continue
		}
		switch {
		case equalFold(name, "content-length"):
			n := parseLength(trimBlank(line[colon+1:]))
			if n < 0 || length >= 0 && n != length {
				bad = true
			}
			length = n
		case equalFold(name, "transfer-encoding"):
			chunked = true
		}
	}
	if framing && !bad && !chunked {
		m.bodyLen = length
	}
}

// parseStatus reads the status code of a status line "HTTP/1.1 200 OK":
// three digits after the version and one space, then a space or the end.
// It returns the version ("1.1", nil if not one) and the code, or -1.
func parseStatus(line []byte) (version []byte, code int) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return httpVersion(line), -1
	}
	version, s := httpVersion(line[:sp]), line[sp+1:]
	if len(s) < 3 || len(s) > 3 && s[3] != ' ' {
		return version, -1
	}
	code = 0
	for _, c := range s[:3] {
		if c < '0' || c > '9' {
			return version, -1
		}
		code = code*10 + int(c-'0')
	}
	return version, code
}

// nextLine splits b after its first line, which ends at CRLF, LF or a lone
// CR, or at the end of b.
func nextLine(b []byte) (line, rest []byte) {
	end := bytes.IndexByte(b, '\n')
	if end < 0 {
		end = len(b)
	}
	if cr := bytes.IndexByte(b[:end], '\r'); cr >= 0 {
		if cr+1 < len(b) && b[cr+1] == '\n' {
			return b[:cr], b[cr+2:]
		}
		return b[:cr], b[cr+1:]
	}
	if end == len(b) {
		return b, nil
	}
	return b[:end], b[end+1:]
}

// equalFold reports whether name equals lower, a lower-case ASCII string,
// ignoring ASCII case.
func equalFold(name []byte, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i]|0x20 != lower[i] { // |0x20 folds A–Z; '-' already has it
			return false
		}
	}
	return true
}

func trimBlank(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// The parser stage: -cpu goroutines, each owning the connections the
// readers' flow hash sends it, turn packet batches into line batches.

// parser is the state one parser goroutine owns.
type parser struct {
	locals  *atomic.Pointer[localSet] // this host's addresses, followed
	clock   *clock
	form    lineFormat
	rec     record
	pair    *pairWorker  // -pair: its connection table; nil without
	counts  parserCounts // of the messages, for /metrics
	metrics *parserSet   // where counts and response times are published
}

// startParsers starts n parser goroutines, each reading its own queue
// (returned, for the readers to send to). Every parser hands its batches
// back to free and its lines to out, which is closed after the last
// parser has returned. Each counts into a set of its own in reg; with
// -pair, parser i owns pairs[i].
func startParsers(n int, reg *registry, locals *atomic.Pointer[localSet], loc *time.Location, form lineFormat, free chan<- *pktBatch, out chan<- *lineBatch, outFree <-chan *lineBatch, pairs []pairWorker) []chan *pktBatch {
	queues := make([]chan *pktBatch, n)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan *pktBatch, queueDepth)
		p := &parser{locals: locals, clock: newClock(loc), form: form, metrics: reg.newParserSet()}
		if pairs != nil {
			p.pair = &pairs[i]
		}
		wg.Add(1)
		go func(in <-chan *pktBatch) {
			defer wg.Done()
			for b := range in {
				lb := <-outFree
				p.batch(b, lb)
				b.items, b.buf = b.items[:0], b.buf[:0]
				free <- b
				out <- lb
				p.pair.publish()
			}
			p.pair.flush()
		}(queues[i])
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return queues
}

// batch appends the lines of the packets of b to lb, and publishes the
// counts of their messages (and with -pair their response times).
func (p *parser) batch(b *pktBatch, lb *lineBatch) {
	set := p.locals.Load()
	rec := &p.rec
	for i := range b.items {
		it := &b.items[i]
		if it.kind != notHTTP {
			parseMessage(it.kind, b.buf[it.off:it.end], &rec.msg, p.pair != nil) // before pairing, which reads it
		}
		if p.pair != nil && !p.pair.time(it, b.buf[it.off:it.end], rec) {
			continue // a FIN, RST or SYN: no line
		}
		server := it.dst.Addr()
		if it.kind == response {
			server = it.src.Addr()
		}
		rec.ts, rec.src, rec.dst = it.ts, it.src, it.dst
		rec.typ = classify(it.kind, set.contains(server))
		p.counts.count(rec.typ, it.kind, &rec.msg)
		if rec.timing == timed {
			p.pair.observe(rec, p.metrics.durations)
		}
		var day uint32
		lb.buf, day = p.form.append(lb.buf, rec, p.clock)
		lb.lines = append(lb.lines, lineRef{end: uint32(len(lb.buf)), day: day, typ: rec.typ})
	}
	p.metrics.publish(&p.counts)
}
