package main

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

const getReq = "GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.0\r\n\r\n"

// TestDecodeFrame is long because it is a table of frames.
func TestDecodeFrame(t *testing.T) {
	tcp := tcpSegment(40000, 80, 20, getReq)
	v4 := ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0, tcp)
	v6 := ipv6Packet("2001:db8::1", "2001:db8::2", 6, nil, nil, tcp)
	padded := append(ether(etherIPv4, nil, ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0, tcpSegment(40000, 80, 20, "GET "))), 0, 0, 0, 0, 0, 0)
	zeroLen := ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0, tcp)
	binary.BigEndian.PutUint16(zeroLen[2:], 0) // as segmentation offload leaves it
	hbh := make([]byte, 8)                     // hop-by-hop options, 8 bytes of padding
	dst := make([]byte, 16)
	dst[1] = 1 // destination options, 16 bytes
	fragFirst := make([]byte, 8)
	binary.BigEndian.PutUint16(fragFirst[2:], 0x0001) // offset 0, more fragments
	fragLater := make([]byte, 8)
	binary.BigEndian.PutUint16(fragLater[2:], 185<<3) // offset 1480
	ah := make([]byte, 16)
	ah[1] = 2 // (2+2)*4 = 16 bytes

	sll := append([]byte{0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00}, v4...)
	sll2 := append([]byte{0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0}, v4...)
	nullV4 := append([]byte{2, 0, 0, 0}, v4...)
	loopV6 := append([]byte{0, 0, 0, 24}, v6...)
	nflog := []byte{2, 0, 0, 0, 8, 0, 1, 0, 0x08, 0x00, 3, 0} // header, packet-header TLV
	nflog = binary.LittleEndian.AppendUint16(nflog, uint16(4+len(v4)))
	nflog = binary.LittleEndian.AppendUint16(nflog, 9) // NFULA_PAYLOAD
	nflog = append(nflog, v4...)
	badNflog := []byte{2, 0, 0, 0, 2, 0, 9, 0} // a TLV shorter than its own header

	tests := []struct {
		name    string
		link    int
		frame   []byte
		want    verdict
		src     string
		payload string
	}{
		{"ipv4", linkEthernet, ether(etherIPv4, nil, v4), vTCP, "192.0.2.1", getReq},
		{"ipv4 options, tcp options", linkEthernet, ether(etherIPv4, nil, ipv4Packet("192.0.2.1", "198.51.100.2", 6, 32, 0, tcpSegment(40000, 80, 40, getReq))), vTCP, "192.0.2.1", getReq},
		{"ethernet padding is not payload", linkEthernet, padded, vTCP, "192.0.2.1", "GET "},
		{"ipv4 length 0 (offload)", linkRaw, zeroLen, vTCP, "192.0.2.1", getReq},
		{"802.1Q", linkEthernet, ether(etherIPv4, []uint16{etherVLAN}, v4), vTCP, "192.0.2.1", getReq},
		{"QinQ", linkEthernet, ether(etherIPv4, []uint16{etherQinQ, etherVLAN}, v4), vTCP, "192.0.2.1", getReq},
		{"three tags", linkEthernet, ether(etherIPv6, []uint16{etherVLAN, etherVLAN, etherVLAN}, v6), vTCP, "2001:db8::1", getReq},
		{"ipv4 first fragment", linkRaw, ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0x2000, tcp), vTCP, "192.0.2.1", getReq},
		{"ipv4 later fragment", linkRaw, ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0x2000|185, tcp), vFragment, "", ""},
		{"ipv4 udp", linkRaw, ipv4Packet("192.0.2.1", "198.51.100.2", 17, 20, 0, tcp), vOther, "", ""},
		{"arp", linkEthernet, ether(0x0806, nil, make([]byte, 28)), vOther, "", ""},
		{"ipv6", linkEthernet, ether(etherIPv6, nil, v6), vTCP, "2001:db8::1", getReq},
		{"ipv6 hop-by-hop, dest opts", linkIPv6, ipv6Packet("2001:db8::1", "2001:db8::2", 6, [][]byte{hbh, dst}, []byte{ip6HopByHop, ip6DestOpts}, tcp), vTCP, "2001:db8::1", getReq},
		{"ipv6 AH", linkIPv6, ipv6Packet("2001:db8::1", "2001:db8::2", 6, [][]byte{ah}, []byte{ip6AH}, tcp), vTCP, "2001:db8::1", getReq},
		{"ipv6 first fragment", linkIPv6, ipv6Packet("2001:db8::1", "2001:db8::2", 6, [][]byte{fragFirst}, []byte{ip6Fragment}, tcp), vTCP, "2001:db8::1", getReq},
		{"ipv6 later fragment", linkIPv6, ipv6Packet("2001:db8::1", "2001:db8::2", 6, [][]byte{fragLater}, []byte{ip6Fragment}, tcp), vFragment, "", ""},
		{"ipv6 udp", linkIPv6, ipv6Packet("2001:db8::1", "2001:db8::2", 17, nil, nil, tcp), vOther, "", ""},
		{"ipv6 extension header cut", linkIPv6, ipv6Packet("2001:db8::1", "2001:db8::2", 6, [][]byte{hbh}, []byte{ip6HopByHop}, nil)[:45], vMalformed, "", ""},
		{"short ethernet", linkEthernet, make([]byte, 10), vMalformed, "", ""},
		{"cut vlan tag", linkEthernet, ether(etherVLAN, nil, []byte{0}), vMalformed, "", ""},
		{"ipv4 header length 4 words", linkRaw, append([]byte{0x44}, v4[1:]...), vMalformed, "", ""},
		{"ipv4 total length below header", linkRaw, append([]byte{0x45, 0, 0, 10}, v4[4:]...), vMalformed, "", ""},
		{"tcp header cut", linkRaw, v4[:30], vMalformed, "", ""},
		{"tcp data offset 4 words", linkRaw, ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0, append(tcpSegment(1, 80, 20, "")[:12], 0x40, 0, 0, 0, 0, 0, 0, 0)), vMalformed, "", ""},
		{"ip version 5", linkRaw, append([]byte{0x55}, v4[1:]...), vMalformed, "", ""},
		{"linux cooked v1", linkLinuxSLL, sll, vTCP, "192.0.2.1", getReq},
		{"linux cooked v2", linkLinuxSLL2, sll2, vTCP, "192.0.2.1", getReq},
		{"BSD loopback", linkNull, nullV4, vTCP, "192.0.2.1", getReq},
		{"OpenBSD loopback ipv6", linkLoop, loopV6, vTCP, "2001:db8::1", getReq},
		{"nflog", linkNFLog, nflog, vTCP, "192.0.2.1", getReq},
		{"nflog bad tlv length", linkNFLog, badNflog, vMalformed, "", ""},
		{"radiotap", 127, ether(etherIPv4, nil, v4), vUnsupported, "", ""},
		{"ethertype IPv4, version 6", linkEthernet, ether(etherIPv4, nil, v6), vMalformed, "", ""},
		{"DLT_IPV6 holding IPv4", linkIPv6, v4, vMalformed, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p packet
			got := decodeFrame(tt.link, tt.frame, &p)
			if got != tt.want {
				t.Fatalf("verdict %d, want %d", got, tt.want)
			}
			if got != vTCP {
				return
			}
			if a := addrFrom(p.src).String(); a != tt.src {
				t.Errorf("source %s, want %s", a, tt.src)
			}
			if p.sport != 40000 || p.dport != 80 {
				t.Errorf("ports %d→%d, want 40000→80", p.sport, p.dport)
			}
			if string(p.payload) != tt.payload {
				t.Errorf("payload %q, want %q", p.payload, tt.payload)
			}
		})
	}
}

func TestFlowHashSymmetric(t *testing.T) {
	a, b := []byte{192, 0, 2, 1}, []byte{198, 51, 100, 2}
	if flowHash(a, b, 40000, 80) != flowHash(b, a, 80, 40000) {
		t.Error("the two directions of a connection hash differently")
	}
	if flowHash(a, b, 40000, 80) == flowHash(a, b, 40001, 80) {
		t.Error("two connections that differ in the client port hash the same")
	}
}

// TestFlowHashSpreads: connections from clients numbered in sequence, each
// with the next port of a cycling range (a NAT pool, a load generator),
// get distinct hash values, as many as random 32-bit values would. The
// pairing table's index is open-addressed on the hash: values that
// coincide make long probe runs, which cost every packet of those
// connections a walk (a million such connections took 7 s instead of
// 0.3 s, when the hash XOR-ed a client's port into the low bits of its
// address and most of them cancelled out).
func TestFlowHashSpreads(t *testing.T) {
	const n = 1 << 17
	for _, tt := range []struct {
		name   string
		server []byte
		port   func(i int) uint16
	}{
		{"ports in sequence", []byte{192, 0, 2, 80}, func(i int) uint16 { return uint16(40000 + i%20000) }},
		{"ports in strides", []byte{192, 0, 2, 80}, func(i int) uint16 { return uint16(1024 + i*7919%64000) }},
		{"one port", []byte{192, 0, 2, 80}, func(i int) uint16 { return 40000 }},
		{"IPv6, ports in sequence", netip.MustParseAddr("2001:db8::80").AsSlice(), func(i int) uint16 { return uint16(40000 + i%20000) }},
	} {
		seen := make(map[uint32]bool, n)
		for i := 0; i < n; i++ {
			c := i + 1
			client := []byte{10, byte(c >> 16), byte(c >> 8), byte(c)}
			if len(tt.server) == 16 { // 2001:db8::c
				client = append(netip.MustParseAddr("2001:db8::").AsSlice()[:13], byte(c>>16), byte(c>>8), byte(c))
			}
			seen[flowHash(client, tt.server, tt.port(i), 80)] = true
		}
		// n random 32-bit values coincide about n²/2³³ = 2 times.
		if dup := n - len(seen); dup > 16 {
			t.Errorf("%s: %d clients, %d hash values: %d coincide", tt.name, n, len(seen), dup)
		}
	}
}

func TestHTTPStart(t *testing.T) {
	tests := []struct {
		payload string
		want    msgKind
	}{
		{"GET / HTTP/1.1", request},
		{"POST /x HTTP/1.1", request},
		{"HEAD / HTTP/1.0", request},
		{"PUT /x", request},
		{"DELETE /x", request},
		{"OPTIONS * HTTP/1.1", request},
		{"TRACE / HTTP/1.1", request},
		{"PATCH /x HTTP/1.1", request},
		{"CONNECT host:443 HTTP/1.1", request},
		{"GET ", request}, // a request line cut by the segment end
		{"HTTP/1.1 200 OK", response},
		{"HTTP/", response},
		{"GET", notHTTP},
		{"GET/ HTTP/1.1", notHTTP},
		{"get / HTTP/1.1", notHTTP},
		{"QUERY / HTTP/1.1", notHTTP},
		{"SEARCH / HTTP/1.1", notHTTP},
		{"PROPFIND / HTTP/1.1", notHTTP},
		{"http/1.1 200 OK", notHTTP},
		{"HTTP", notHTTP},
		{"HTTX/1.1", notHTTP},
		{"\x16\x03\x01\x02\x00", notHTTP},
		{"", notHTTP},
		{"xGET / HTTP/1.1", notHTTP},
	}
	for _, tt := range tests {
		if got := httpStart([]byte(tt.payload)); got != tt.want {
			t.Errorf("httpStart(%q) = %d, want %d", tt.payload, got, tt.want)
		}
	}
}

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name          string
		kind          msgKind
		payload       string
		start, f1, f2 string
	}{
		{"crlf", request, getReq, "GET /index.html HTTP/1.1", "www.example.com", "curl/8.0"},
		{"lf only", request, "GET / HTTP/1.1\nUser-Agent: a\nHost: h\n\n", "GET / HTTP/1.1", "h", "a"},
		{"lone cr", request, "GET / HTTP/1.1\rHost: h\rUser-Agent: a\r\r", "GET / HTTP/1.1", "h", "a"},
		{"names in any case", request, "GET / HTTP/1.1\r\nhOsT: h\r\nUSER-AGENT: a\r\n\r\n", "GET / HTTP/1.1", "h", "a"},
		{"first occurrence wins", request, "GET / HTTP/1.1\r\nHost: one\r\nHost: two\r\n\r\n", "GET / HTTP/1.1", "one", ""},
		{"values trimmed of spaces and tabs", request, "GET / HTTP/1.1\r\nHost: \t h \t\r\nUser-Agent:a b \r\n\r\n", "GET / HTTP/1.1", "h", "a b"},
		{"empty value", request, "GET / HTTP/1.1\r\nHost:   \r\n\r\n", "GET / HTTP/1.1", "", ""},
		{"header cut by snap length", request, "GET / HTTP/1.1\r\nHost: exa", "GET / HTTP/1.1", "exa", ""},
		{"only the header block", request, "POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nHost: body", "POST / HTTP/1.1", "", ""},
		{"name with space before colon is another name", request, "GET / HTTP/1.1\r\nHost : h\r\n\r\n", "GET / HTTP/1.1", "", ""},
		{"line without colon skipped", request, "GET / HTTP/1.1\r\ngarbage\r\nHost: h\r\n\r\n", "GET / HTTP/1.1", "h", ""},
		{"start line without end", request, "GET /images/sf.net_box.gif HTT", "GET /images/sf.net_box.gif HTT", "", ""},
		{"trailing space kept", request, "GET \r\n\r\n", "GET ", "", ""},
		{"response", response, "HTTP/1.1 302 Found\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 302 Found", "0", "text/html; charset=UTF-8"},
		{"response ignores Host", response, "HTTP/1.1 200 OK\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK", "", ""},
		{"request ignores Content-Type", request, "POST / HTTP/1.1\r\nContent-Type: x\r\n\r\n", "POST / HTTP/1.1", "", ""},
		{"second message not used", response, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HTTP/1.1 100 Continue", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, framing := range []bool{false, true} { // reading the framing too changes nothing of the line's
				var m message
				parseMessage(tt.kind, []byte(tt.payload), &m, framing)
				if string(m.start) != tt.start || string(m.field1) != tt.f1 || string(m.field2) != tt.f2 {
					t.Errorf("framing %v: got %q %q %q, want %q %q %q", framing, m.start, m.field1, m.field2, tt.start, tt.f1, tt.f2)
				}
			}
		})
	}
}

func TestAppendEscaped(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain /path?q=1", "plain /path?q=1"},
		{"a\\b", `a\\b`},
		{"nul\x00 esc\x1b del\x7f tab\t", `nul\x00 esc\x1b del\x7f tab\x09`},
		{"cr\rlf\n", `cr\x0dlf\x0a`},
		{"caf\xc3\xa9 한국", "café 한국"},    // valid UTF-8 stays
		{"\xc3", `\xc3`},                 // cut multi-byte sequence
		{"\xff\xfe", `\xff\xfe`},         // never valid
		{"\xed\xa0\x80", `\xed\xa0\x80`}, // an encoded surrogate is not valid UTF-8
		{"\xc0\xaf", `\xc0\xaf`},         // overlong
		{"\xef\xbf\xbd", "\xef\xbf\xbd"}, // U+FFFD itself is valid
		// Valid UTF-8 that readers take as a line break or that reorders
		// text: every byte escaped. The characters just beside stay.
		{"nel\u0085.", `nel\xc2\x85.`},
		{"\u0080 \u009f \u00a0", `\xc2\x80 \xc2\x9f ` + "\u00a0"}, // C1 ends; U+00A0 is not C1
		{"\u2027\u2028\u2029\u202a\u202e\u202f", "\u2027" + `\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xaa\xe2\x80\xae` + "\u202f"},
		{"\u2065\u2066\u2069\u206a", "\u2065" + `\xe2\x81\xa6\xe2\x81\xa9` + "\u206a"},
		{"a\u202eb\\", `a\xe2\x80\xaeb\\`}, // bidi override, then a backslash
		{`\x41`, `\\x41`},                  // an escape-looking text stays unambiguous
	}
	for _, tt := range tests {
		if got := string(appendEscaped(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("appendEscaped(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		kind  msgKind
		local bool
		want  string
	}{
		{request, true, "CQ"}, {response, true, "CR"}, {request, false, "SQ"}, {response, false, "SR"},
	}
	for _, tt := range tests {
		if got := classify(tt.kind, tt.local).String(); got != tt.want {
			t.Errorf("classify(%d, %v) = %s, want %s", tt.kind, tt.local, got, tt.want)
		}
	}
}

func TestAppendLine(t *testing.T) {
	seoul, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	rec := record{
		ts:  time.Date(2019, 9, 1, 5, 16, 51, 2999999, time.UTC).UnixNano(), // .002999: cut, not rounded
		src: netip.MustParseAddrPort("[2001:db8:0:0:0:0:0:1]:50905"),
		dst: netip.MustParseAddrPort("[::ffff:10.140.0.2]:80"),
		typ: typeCQ,
		msg: message{start: []byte("GET / HTTP/1.1"), field2: []byte("a\nb")},
	}
	got, day := appendLine(nil, &rec, newClock(seoul), nil)
	want := "2019-09-01 14:16:51.002 2001:db8::1#50905 ::ffff:10.140.0.2#80 CQ GET / HTTP/1.1 - a\\x0ab\n"
	if string(got) != want || day != 20190901 {
		t.Errorf("got %q day %d\nwant %q day 20190901", got, day, want)
	}
	// Local midnight decides the day, not UTC's.
	rec.ts = time.Date(2019, 9, 1, 15, 0, 0, 0, time.UTC).UnixNano()
	if _, day := appendLine(nil, &rec, newClock(seoul), nil); day != 20190902 {
		t.Errorf("00:00 in Seoul is day %d, want 20190902", day)
	}
	rec.ts = -1 // before 1970: the clock must still count whole milliseconds down
	if got, _ := appendLine(nil, &rec, newClock(time.UTC), nil); !strings.HasPrefix(string(got), "1969-12-31 23:59:59.999 ") {
		t.Errorf("ts -1ns formatted as %q", got)
	}
}

// packetPath is the per-packet path that serve runs, minus the goroutines:
// a reader judges the frame and batches an HTTP start, the batch goes over
// the parser's queue, and the parser formats its line.
type packetPath struct {
	r  *reader
	q  chan *pktBatch
	p  *parser
	lb lineBatch
}

func newPacketPath(set *localSet, form lineFormat) *packetPath {
	q, free := make(chan *pktBatch, 1), make(chan *pktBatch, 1)
	free <- &pktBatch{}
	var locals atomic.Pointer[localSet]
	locals.Store(set)
	return &packetPath{
		r: newReader(nil, readerConfig{ports: []uint16{80}}, []chan *pktBatch{q}, free, &counterSet{}),
		q: q,
		p: &parser{locals: &locals, clock: newClock(time.UTC), form: form, metrics: &parserSet{durations: &durationSet{}}},
	}
}

// run takes one frame through the path; it returns the line, if any.
func (pp *packetPath) run(data []byte) []byte {
	return pp.runAt(data, 1567315011002000000)
}

// runAt is run with the frame captured at ts (Unix nanoseconds).
func (pp *packetPath) runAt(data []byte, ts int64) []byte {
	f := frame{data: data, ts: ts, wire: len(data), link: linkEthernet}
	var p packet
	pp.r.handle(&f, &p)
	pp.r.sendAll()
	pp.lb.reset()
	select {
	case b := <-pp.q:
		pp.p.batch(b, &pp.lb)
		b.items, b.buf = b.items[:0], b.buf[:0]
		pp.r.free <- b
	default: // not an HTTP start: nothing was batched
	}
	return pp.lb.buf
}

var benchFrames = map[string][]byte{
	"nonHTTP":  ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, strings.Repeat("\x00body", 280)),
	"request":  ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, "GET /static/app.js?v=12 HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate, br\r\nCookie: session=0123456789abcdef\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\r\n"),
	"response": ipv4HTTP("198.51.100.2", "192.0.2.1", 80, 40000, "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 01 Sep 2019 05:16:51 GMT\r\nContent-Type: application/javascript\r\nContent-Length: 48213\r\nConnection: keep-alive\r\n\r\n"+strings.Repeat("x", 1200)),
	"ipv6":     ipv6HTTP("2001:db8::1", "2001:db8::2", 40000, 80, getReq),
	// A signed URL: what -redact has work to do on.
	"secret": ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, "GET /bucket/report.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20190901%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20190901T051651Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef HTTP/1.1\r\nHost: files.example.com\r\nUser-Agent: curl/8.0\r\n\r\n"),
	"vlan":   ether(etherIPv4, []uint16{etherVLAN}, ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0, tcpSegment(40000, 80, 32, getReq))),
}

// benchFormats are the formats the packet path is measured with: text
// (the default), JSON, and both with -redact and the default list.
var benchFormats = map[string]lineFormat{
	"text":        {},
	"json":        {json: true},
	"text-redact": {redact: newRedactor(strings.Split(defaultRedactParams, ","))},
	"json-redact": {json: true, redact: newRedactor(strings.Split(defaultRedactParams, ","))},
}

// TestPacketPathAllocs: the reader's and the parser's work on a frame,
// counting for /metrics included, allocates nothing.
func TestPacketPathAllocs(t *testing.T) {
	for fname, form := range benchFormats {
		pp := newPacketPath(&localSet{prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.2/32")}}, form)
		for name, frame := range benchFrames {
			before := publishedMessages(pp.p.metrics)
			line := pp.run(frame) // warm the clock's text and the batches' buffers
			if (name == "nonHTTP") != (len(line) == 0) {
				t.Errorf("%s %s: line %q", fname, name, line)
			}
			if n := publishedMessages(pp.p.metrics) - before; n != uint64(len(pp.lb.lines)) {
				t.Errorf("%s %s: %d messages counted for /metrics, want %d", fname, name, n, len(pp.lb.lines))
			}
			allocs := testing.AllocsPerRun(200, func() { pp.run(frame) })
			if allocs != 0 {
				t.Errorf("%s %s: %.1f allocations per packet, want 0", fname, name, allocs)
			}
		}
	}
}

func BenchmarkPacketPath(b *testing.B) {
	for _, fname := range []string{"text", "json", "text-redact", "json-redact"} {
		for _, name := range []string{"nonHTTP", "request", "response", "ipv6", "vlan", "secret"} {
			frame := benchFrames[name]
			b.Run(fname+"/"+name, func(b *testing.B) {
				pp := newPacketPath(&localSet{prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.2/32")}}, benchFormats[fname])
				b.ReportAllocs()
				b.SetBytes(int64(len(frame)))
				for i := 0; i < b.N; i++ {
					pp.run(frame)
				}
			})
		}
	}
}

// FuzzDecodeFrame: no input panics the decoder, and what it returns lies
// inside the frame.
func FuzzDecodeFrame(f *testing.F) {
	for _, frame := range benchFrames {
		f.Add(uint16(linkEthernet), frame)
	}
	// Tricky seeds: lengths that lie, chains of IPv6 extension headers,
	// stacked VLAN tags with nothing behind them, NFLOG with bad TLVs.
	f.Add(uint16(linkRaw), []byte{0x4f, 0, 0xff, 0xff})
	f.Add(uint16(linkIPv6), append(append([]byte{0x60, 0, 0, 0, 0, 8, 0, 64}, make([]byte, 32)...), 43, 255, 0, 0))
	f.Add(uint16(linkEthernet), bytes.Repeat([]byte{0x81, 0x00}, 30))
	f.Add(uint16(linkNFLog), []byte{2, 0, 0, 0, 0xff, 0xff, 9, 0})
	addCorpusSeeds(f, func(link int, frame []byte) { f.Add(uint16(link), frame) })
	f.Fuzz(func(t *testing.T, link uint16, frame []byte) {
		var p packet
		if decodeFrame(int(link), frame, &p) != vTCP {
			return
		}
		for _, s := range [][]byte{p.src, p.dst, p.payload} {
			if !within(s, frame) {
				t.Fatalf("a slice of the result lies outside the frame")
			}
		}
		if len(p.src) != 4 && len(p.src) != 16 {
			t.Fatalf("address of %d bytes", len(p.src))
		}
	})
}

// FuzzLogLine: whatever the payload, a line is one line of valid UTF-8
// with no control byte and no character that readers take as a line break
// or that reorders text, and unescaping its message gives the bytes back.
func FuzzLogLine(f *testing.F) {
	f.Add([]byte(getReq))
	f.Add([]byte("GET /\x00\x1b[31m\\\xff HTTP/1.1\r\nHost: a\rb\r\nUser-Agent: \xc3\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\nContent-Length:\t\t\nContent-Type: \xe2\x82"))
	f.Add([]byte("CONNECT host:25 / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("GET /\u2028x\u0085 HTTP/1.1\r\nHost: \u202eevil\u2069\r\nUser-Agent: \u009b31m\r\n"))
	addCorpusSeeds(f, func(link int, frame []byte) {
		var p packet
		if decodeFrame(link, frame, &p) == vTCP {
			f.Add(p.payload)
		}
	})
	c := newClock(time.UTC)
	f.Fuzz(func(t *testing.T, payload []byte) {
		kind := httpStart(payload)
		if kind == notHTTP {
			return
		}
		rec := record{src: netip.MustParseAddrPort("192.0.2.1:1"), dst: netip.MustParseAddrPort("192.0.2.2:80")}
		parseMessage(kind, payload, &rec.msg, false)
		line, _ := appendLine(nil, &rec, c, nil)
		if bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("not exactly one line: %q", line)
		}
		if !utf8.Valid(line) {
			t.Fatalf("not valid UTF-8: %q", line)
		}
		for _, b := range line[:len(line)-1] {
			if b < 0x20 || b == 0x7f {
				t.Fatalf("control byte %#x in %q", b, line)
			}
		}
		if i := bytes.IndexAny(line, lineBreakers); i >= 0 {
			t.Fatalf("a line break or bidi control raw at byte %d of %q", i, line)
		}
		if got := unescape(appendEscaped(nil, rec.msg.start)); !bytes.Equal(got, rec.msg.start) {
			t.Fatalf("escaping does not round-trip: %q → %q", rec.msg.start, got)
		}
		if !bytes.HasPrefix(payload, rec.msg.start) || bytes.ContainsAny(rec.msg.start, "\r\n") {
			t.Fatalf("start line %q is not the payload's first line", rec.msg.start)
		}
	})
}

// lineBreakers are the characters beyond ASCII that SPEC section 2 says
// must never be written raw: C1 controls, U+2028, U+2029 and the bidi
// controls.
var lineBreakers = func() string {
	var b strings.Builder
	for _, span := range [][2]rune{{0x80, 0x9f}, {0x2028, 0x202e}, {0x2066, 0x2069}} {
		for r := span[0]; r <= span[1]; r++ {
			b.WriteRune(r)
		}
	}
	return b.String()
}()

// unescape undoes appendEscaped.
func unescape(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) && b[i+1] == '\\' {
			out = append(out, '\\')
			i++
			continue
		}
		if b[i] == '\\' && i+3 < len(b) && b[i+1] == 'x' {
			hi, lo := strings.IndexByte(hexDigits, b[i+2]), strings.IndexByte(hexDigits, b[i+3])
			out = append(out, byte(hi<<4|lo))
			i += 3
			continue
		}
		out = append(out, b[i])
	}
	return out
}

// within reports whether s is a sub-slice of frame (or empty).
func within(s, frame []byte) bool {
	if len(s) == 0 {
		return true
	}
	for i := range frame {
		if &frame[i] == &s[0] {
			return i+len(s) <= len(frame)
		}
	}
	return false
}

// addCorpusSeeds feeds every frame of a few corpus captures, of several
// link types, to add.
func addCorpusSeeds(f *testing.F, add func(link int, frame []byte)) {
	dir := corpusDir(f)
	for _, name := range []string{
		"http/get.pcap", "http-qinq-0.pcap", "ipv6-hbh-routing0.pcap", "ipv4/fragmented-4.pcap",
		"nflog-http.pcap", "linux_dlt_sll2.pcap", "tunnels/socks.pcap", "tcp/payload-syn.pcap",
		"trunc/ip6-ext-trunc.pcap", "tcp/truncated-header.pcap", "http/261/variant-01-chunk_2pow64_overflow.pcap",
	} {
		src, err := openFile(dir + "/pcaps/" + name)
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		var fr frame
		for src.next(&fr) == nil {
			add(fr.link, append([]byte(nil), fr.data...))
		}
		src.close()
	}
}
