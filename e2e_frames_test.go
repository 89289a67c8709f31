package main

// The hand-made frames of TestE2EHostile (e2e_hostile_test.go), each with
// the lines it must make.

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
)

// e2eFrame is a frame to send and the lines (after the timestamp) it must
// make.
type e2eFrame struct {
	name string
	data []byte
	want []string
}

// e2eFrames makes the hostile frames, client → server on the topology's
// addresses (so requests are CQ and responses CR), to a made-up
// destination MAC so that the server's stack ignores them. Expected lines
// are written out by hand, from the spec's escaping rules (§2).
func e2eFrames(tp *topology) []e2eFrame {
	s := &e2eFrameSet{c4: tp.cli4, s4: tp.srv4, c6: tp.cli6, s6: tp.srv6, port: 40000}
	s.addText()
	s.addIPv6()
	s.addIPv4()
	s.addCut()
	s.addRandom()
	return s.frames
}

// e2eFrameSet collects frames between the client (c4, c6) and the
// server's port 80 (s4, s6); each connection has a client port of its
// own, counted on from port.
type e2eFrameSet struct {
	c4, s4, c6, s6 string
	port           uint16
	frames         []e2eFrame
}

// next is the client port of a new connection.
func (s *e2eFrameSet) next() uint16 { s.port++; return s.port }

func (s *e2eFrameSet) add(name string, data []byte, want ...string) {
	s.frames = append(s.frames, e2eFrame{name, data, want})
}

// req4 adds an IPv4 request with payload, which must make the CQ line
// msg, or none if msg is "".
func (s *e2eFrameSet) req4(name, payload, msg string) {
	p := s.next()
	var want []string
	if msg != "" {
		want = append(want, e2eCQ(s.c4, s.s4, p, msg))
	}
	s.add(name, ipv4HTTP(s.c4, s.s4, p, 80, payload), want...)
}

// resp4 adds an IPv4 response with payload, which must make the CR line
// msg, or none if msg is "".
func (s *e2eFrameSet) resp4(name, payload, msg string) {
	p := s.next()
	var want []string
	if msg != "" {
		want = append(want, e2eCR(s.s4, s.c4, p, msg))
	}
	s.add(name, ipv4HTTP(s.s4, s.c4, 80, p, payload), want...)
}

// e2eCQ and e2eCR are the texts (after the timestamp) of the CQ line of a
// request from src#sport to dst#80, and of the CR line of a response from
// src#80 to dst#dport, with msg after the type.
func e2eCQ(src, dst string, sport uint16, msg string) string {
	return fmt.Sprintf("%s %s CQ %s", endpoint(netip.AddrPortFrom(netip.MustParseAddr(src), sport)),
		endpoint(netip.AddrPortFrom(netip.MustParseAddr(dst), 80)), msg)
}

func e2eCR(src, dst string, dport uint16, msg string) string {
	return fmt.Sprintf("%s %s CR %s", endpoint(netip.AddrPortFrom(netip.MustParseAddr(src), 80)),
		endpoint(netip.AddrPortFrom(netip.MustParseAddr(dst), dport)), msg)
}

// addText: what the request and status lines and the header values
// may hold — control bytes, backslashes, invalid UTF-8, odd line ends,
// methods and near misses, 8 KB lines — and how each must be logged.
func (s *e2eFrameSet) addText() {
	// Control bytes, backslashes and invalid UTF-8 in every field.
	s.req4("control bytes and invalid UTF-8",
		"GET /a\x00b\x01c\x1b[31mred\x7f\\d\xffe\xe2\x82 HTTP/1.1\r\nHost: h\x00st\x1b\r\nUser-Agent: ua\\\xc3\xa9\xc3\r\n\r\n",
		`GET /a\x00b\x01c\x1b[31mred\x7f\\d\xffe\xe2\x82 HTTP/1.1 h\x00st\x1b ua\\é\xc3`)
	s.req4("valid UTF-8 is kept",
		"GET /日本語/é?q=ü HTTP/1.1\r\nHost: bücher.test\r\nUser-Agent: Mozilla/5.0 (ж)\r\n\r\n",
		"GET /日本語/é?q=ü HTTP/1.1 bücher.test Mozilla/5.0 (ж)")
	s.req4("overlong, surrogate, beyond U+10FFFF",
		"GET /\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xf0\x9f\x98\x80 HTTP/1.1\r\n\r\n",
		`GET /\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80😀 HTTP/1.1 - -`)
	s.req4("a lone CR ends the request line",
		"GET /cr\rinjected: x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /cr a -")
	s.req4("LF line ends",
		"GET /lf HTTP/1.0\nHost: lf.test\nUser-Agent: lf/1\n\n",
		"GET /lf HTTP/1.0 lf.test lf/1")
	s.req4("terminal escape sequences in the User-Agent",
		"GET /esc HTTP/1.1\r\nHost: esc\r\nUser-Agent: a\x1b]0;title\x07\x1b[2J\x08\x08\r\n\r\n",
		`GET /esc HTTP/1.1 esc a\x1b]0;title\x07\x1b[2J\x08\x08`)
	s.req4("a forged log line in a header",
		"GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: evil\r\n2019-09-01 00:00:00.000 1.2.3.4#1 5.6.7.8#80 CQ GET /fake HTTP/1.1 - -\r\n\r\n",
		"GET /x HTTP/1.1 a evil")
	s.req4("header names in any case, values trimmed, first wins, empty is -",
		"POST /h HTTP/1.1\r\nhOsT: \t first \t\r\nHOST: second\r\nuser-agent:\t \r\nUser-Agent: late\r\n\r\n",
		"POST /h HTTP/1.1 first -")
	s.req4("headers after the empty line are body",
		"PUT /b HTTP/1.1\r\nX: y\r\n\r\nHost: body\r\nUser-Agent: body\r\n",
		"PUT /b HTTP/1.1 - -")
	s.req4("trailing spaces of the request line are kept",
		"DELETE /t HTTP/1.1  \r\nHost: t\r\n\r\n",
		"DELETE /t HTTP/1.1   t -")
	s.req4("the method alone", "GET ", "GET  - -")
	for _, m := range []string{"OPTIONS * HTTP/1.1", "TRACE / HTTP/1.1", "PATCH /p HTTP/1.1", "CONNECT example.test:443 HTTP/1.1", "HEAD / HTTP/1.0"} {
		s.req4(m, m+"\r\nHost: m.test\r\nUser-Agent: m\r\n\r\n", m+" m.test m")
	}
	for _, p := range []string{"get / HTTP/1.1\r\n\r\n", "PROPFIND / HTTP/1.1\r\n\r\n", "GET", "GETS / HTTP/1.1\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\n\r\n", " GET / HTTP/1.1\r\n\r\n", "HTTP", "Http/1.1 200 OK\r\n\r\n", "\x00GET / HTTP/1.1"} {
		s.req4(fmt.Sprintf("not an HTTP start: %q", p), p, "")
	}
	s.resp4("a response with control bytes",
		"HTTP/1.1 200 \x1bOK\xff\r\nContent-Length: 1\x002\r\nContent-Type: text/html;\\\"x\x7f\r\n\r\n",
		`HTTP/1.1 200 \x1bOK\xff 1\x002 text/html;\\"x\x7f`)
	s.resp4("a response with LF line ends", "HTTP/1.0 404 Not Found\nContent-Type: text/plain\n\n", "HTTP/1.0 404 Not Found - text/plain")
	s.resp4("HTTP/ alone", "HTTP/", "HTTP/ - -")

	// 8 KB lines, sent whole (MTU 9000) and captured whole (-s 65535).
	long := strings.Repeat("a", 8000)
	s.req4("an 8 KB request line", "GET /"+long+" HTTP/1.1\r\nHost: big\r\n\r\n", "GET /"+long+" HTTP/1.1 big -")
	ua := strings.Repeat("U", 8192)
	s.req4("an 8 KB User-Agent", "GET /bigua HTTP/1.1\r\nHost: big\r\nUser-Agent: "+ua+"\r\n\r\n", "GET /bigua HTTP/1.1 big "+ua)
	esc := strings.Repeat("\x1b\\", 2000)
	s.req4("an 8 KB header of escapes", "GET /bigesc HTTP/1.1\r\nUser-Agent: "+esc+"\r\nHost: e\r\n\r\n",
		"GET /bigesc HTTP/1.1 e "+strings.Repeat(`\x1b\\`, 2000))
}

// addIPv6: IPv6 requests and responses, extension header chains,
// fragments, lengths that do not match the frame.
func (s *e2eFrameSet) addIPv6() {
	c6, s6 := s.c6, s.s6
	p := s.next()
	s.add("IPv6 request with control bytes", ipv6HTTP(c6, s6, p, 80, "GET /v6\x00 HTTP/1.1\r\nHost: [fd00:200::1]\r\nUser-Agent: v6\xfe\r\n\r\n"),
		e2eCQ(c6, s6, p, `GET /v6\x00 HTTP/1.1 [fd00:200::1] v6\xfe`))
	p = s.next()
	s.add("IPv6 response", ipv6HTTP(s6, c6, 80, p, "HTTP/1.1 301 Moved\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n"),
		e2eCR(s6, c6, p, "HTTP/1.1 301 Moved 0 text/html"))
	hbh := func() []byte { return []byte{0, 0, 1, 4, 0, 0, 0, 0} } // hop-by-hop or destination options: PadN
	frag := func(off uint16, more bool) []byte {
		b := make([]byte, 8)
		v := off << 3
		if more {
			v |= 1
		}
		binary.BigEndian.PutUint16(b[2:], v)
		binary.BigEndian.PutUint32(b[4:], 0x1234)
		return b
	}
	p = s.next()
	s.add("IPv6 hop-by-hop, destination options, then TCP",
		ether(etherIPv6, nil, ipv6Packet(c6, s6, 6, [][]byte{hbh(), hbh()}, []byte{ip6HopByHop, ip6DestOpts}, tcpSegment(p, 80, 20, "GET /ext HTTP/1.1\r\n\r\n"))),
		e2eCQ(c6, s6, p, "GET /ext HTTP/1.1 - -"))
	p = s.next()
	s.add("IPv6 first fragment",
		ether(etherIPv6, nil, ipv6Packet(c6, s6, 6, [][]byte{frag(0, true)}, []byte{ip6Fragment}, tcpSegment(p, 80, 20, "GET /frag0 HTTP/1.1\r\nHost: f"))),
		e2eCQ(c6, s6, p, "GET /frag0 HTTP/1.1 f -"))
	s.add("IPv6 later fragment",
		ether(etherIPv6, nil, ipv6Packet(c6, s6, 6, [][]byte{frag(8, false)}, []byte{ip6Fragment}, tcpSegment(s.next(), 80, 20, "GET /frag8 HTTP/1.1\r\n\r\n"))))
	long6 := ether(etherIPv6, nil, ipv6Packet(c6, s6, 6, [][]byte{hbh()}, []byte{ip6HopByHop}, tcpSegment(s.next(), 80, 20, "GET /x HTTP/1.1\r\n\r\n")))
	long6[14+40+1] = 200 // the extension header runs past the end
	s.add("IPv6 extension header longer than the packet", long6)
	p = s.next()
	zero6 := ipv6HTTP(c6, s6, p, 80, "GET /jumbo HTTP/1.1\r\n\r\n")
	binary.BigEndian.PutUint16(zero6[14+4:], 0) // payload length 0: the captured bytes
	s.add("IPv6 payload length 0", zero6, e2eCQ(c6, s6, p, "GET /jumbo HTTP/1.1 - -"))
	p = s.next()
	pad6 := append(ipv6HTTP(c6, s6, p, 80, "GET /v6pad"), " HTTP/1.1\r\nHost: padding\r\n\r\n"...)
	s.add("IPv6 padding after the payload length", pad6, e2eCQ(c6, s6, p, "GET /v6pad - -"))
	s.add("IPv6 header cut", ipv6HTTP(c6, s6, s.next(), 80, "GET / HTTP/1.1\r\n\r\n")[:14+30])
}

// addIPv4: VLAN tags, IP and TCP options, and IPv4 and TCP header
// lengths that do not match the frame.
func (s *e2eFrameSet) addIPv4() {
	c4, s4 := s.c4, s.s4
	// VLAN tags: the receiving veth takes the outer 802.1Q or 802.1ad tag
	// into the packet's metadata; the rest stay in the frame.
	for _, tags := range [][]uint16{{etherVLAN}, {etherQinQ, etherVLAN}, {etherQinQv1, etherVLAN}, {etherQinQ, etherVLAN, etherVLAN}, {etherQinQ, etherVLAN, etherVLAN, etherVLAN}} {
		p := s.next()
		s.add(fmt.Sprintf("VLAN tags %x", tags), ether(etherIPv4, tags, ipv4Packet(c4, s4, 6, 20, 0, tcpSegment(p, 80, 20, "GET /vlan HTTP/1.1\r\n\r\n"))),
			e2eCQ(c4, s4, p, "GET /vlan HTTP/1.1 - -"))
	}

	// IP and TCP options and their lengths.
	p := s.next()
	s.add("IPv4 options (IHL 15), TCP options (data offset 15)",
		ether(etherIPv4, nil, ipv4Packet(c4, s4, 6, 60, 0, tcpSegment(p, 80, 60, "GET /opts HTTP/1.1\r\n\r\n"))),
		e2eCQ(c4, s4, p, "GET /opts HTTP/1.1 - -"))
	for ihl := 0; ihl < 5; ihl++ {
		f := ipv4HTTP(c4, s4, s.next(), 80, "GET /ihl HTTP/1.1\r\n\r\n")
		f[14] = 0x40 | byte(ihl)
		s.add(fmt.Sprintf("IPv4 IHL %d", ihl), f)
	}
	f := ipv4HTTP(c4, s4, s.next(), 80, "GET /ihl15 HTTP")
	f[14] = 0x4f // 60 bytes of header, 36 there
	s.add("IPv4 IHL 15 beyond the packet", f)
	for doff := 0; doff < 5; doff++ {
		f := ipv4HTTP(c4, s4, s.next(), 80, "GET /doff HTTP/1.1\r\n\r\n")
		f[14+20+12] = byte(doff) << 4
		s.add(fmt.Sprintf("TCP data offset %d", doff), f)
	}
	f = ipv4HTTP(c4, s4, s.next(), 80, "GET /d")
	f[14+20+12] = 0xf0
	s.add("TCP data offset 15 beyond the segment", f)
	setLen := func(f []byte, n int) []byte { binary.BigEndian.PutUint16(f[14+2:], uint16(n)); return f }
	p = s.next()
	s.add("IPv4 total length 0 (segmentation offload)", setLen(ipv4HTTP(c4, s4, p, 80, "GET /tso HTTP/1.1\r\n\r\n"), 0), e2eCQ(c4, s4, p, "GET /tso HTTP/1.1 - -"))
	p = s.next()
	s.add("IPv4 total length beyond the frame", setLen(ipv4HTTP(c4, s4, p, 80, "GET /short HTTP/1.1\r\nHost: s\r\n\r\n"), 4000), e2eCQ(c4, s4, p, "GET /short HTTP/1.1 s -"))
	p = s.next()
	s.add("IPv4 total length cuts the payload", setLen(ipv4HTTP(c4, s4, p, 80, "GET /cut HTTP/1.1\r\nHost: a\r\n\r\n"), 20+20+7), e2eCQ(c4, s4, p, "GET /cu - -"))
	p = s.next()
	s.add("Ethernet padding after the IPv4 total length", append(ipv4HTTP(c4, s4, p, 80, "GET /pad"), " HTTP/1.1\r\nHost: padding\r\n\r\n"...), e2eCQ(c4, s4, p, "GET /pad - -"))
	s.add("IPv4 total length shorter than the header", setLen(ipv4HTTP(c4, s4, s.next(), 80, "GET / HTTP/1.1\r\n\r\n"), 10))
	s.add("IPv4 total length cuts the TCP header", setLen(ipv4HTTP(c4, s4, s.next(), 80, "GET / HTTP/1.1\r\n\r\n"), 30))
	s.add("IPv4 later fragment", ether(etherIPv4, nil, ipv4Packet(c4, s4, 6, 20, 185, tcpSegment(s.next(), 80, 20, "GET /frag HTTP/1.1\r\n\r\n"))))
	s.add("UDP to port 80", ether(etherIPv4, nil, ipv4Packet(c4, s4, 17, 20, 0, tcpSegment(s.next(), 80, 20, "GET /udp HTTP/1.1\r\n\r\n"))))
	s.add("IPv4 version 5", func() []byte { f := ipv4HTTP(c4, s4, s.next(), 80, "GET / HTTP/1.1\r\n\r\n"); f[14] = 0x55; return f }())
}

// addCut: one request cut short at every length, then at places in
// its request line and headers (the line must stop where the capture
// does).
func (s *e2eFrameSet) addCut() {
	c4, s4 := s.c4, s.s4
	p := s.next()
	full := ipv4HTTP(c4, s4, p, 80, "GET /trunc HTTP/1.1\r\nHost: example.test\r\nUser-Agent: trunc/1\r\n\r\n")
	const hdr = 14 + 20 + 20
	for n := 0; n < hdr+4; n++ {
		s.add(fmt.Sprintf("request cut at %d bytes", n), slices.Clone(full[:n]))
	}
	for _, c := range []struct {
		n   int
		msg string
	}{
		{4, "GET  - -"},
		{7, "GET /tr - -"},
		{len("GET /trunc HTTP/1.1\r"), "GET /trunc HTTP/1.1 - -"},
		{len("GET /trunc HTTP/1.1\r\nHost: exa"), "GET /trunc HTTP/1.1 exa -"},
		{len("GET /trunc HTTP/1.1\r\nHost: example.test\r\nUser-Agent: tr"), "GET /trunc HTTP/1.1 example.test tr"},
		{len(full) - hdr, "GET /trunc HTTP/1.1 example.test trunc/1"},
	} {
		s.add(fmt.Sprintf("request cut after %d bytes of payload", c.n), slices.Clone(full[:hdr+c.n]), e2eCQ(c4, s4, p, c.msg))
	}
}

// addRandom: random bytes, and random bytes behind valid Ethernet and IPv4
// headers (TCP header and payload garbage), from a fixed seed.
func (s *e2eFrameSet) addRandom() {
	c4, s4 := s.c4, s.s4
	rng := rand.New(rand.NewPCG(3, 2019))
	for i := 0; i < 200; i++ {
		b := make([]byte, rng.IntN(1515))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		s.add(fmt.Sprintf("random %d", i), b)
	}
	for i := 0; i < 200; i++ {
		seg := make([]byte, rng.IntN(120))
		for j := range seg {
			seg[j] = byte(rng.Uint32())
		}
		if len(seg) > 13 {
			seg[13] &^= 0x02 // no SYN: a random segment must not open a connection
		}
		if i%2 == 0 && len(seg) >= 4 {
			binary.BigEndian.PutUint16(seg[2:], 80)
		}
		s.add(fmt.Sprintf("random TCP %d", i), ether(etherIPv4, nil, ipv4Packet(c4, s4, 6, 20, 0, seg)))
	}
}
