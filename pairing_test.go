package main

import (
	"cmp"
	"fmt"
	"math/rand"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/gopacket/layers"
)

// pairConn plays one TCP connection through decodeFrame and a pairTable,
// numbering each side's bytes as a TCP stack does: a segment carries the
// sender's next sequence number and acknowledges everything the other
// side has sent so far. A message "lost" is sent (its bytes count) but
// not shown to the table, as when the capture drops it.
type pairConn struct {
	t              *testing.T
	tab            *pairTable
	client, server string
	cport          uint16
	cseq, sseq     uint32 // the next byte each side sends
}

const pairT0 = int64(1567315011) * 1e9 // 2019-09-01 05:16:51 UTC

func ms(n float64) int64 { return pairT0 + int64(n*1e6) }

func newPairConn(t *testing.T, tab *pairTable, cport uint16, cseq, sseq uint32) *pairConn {
	return &pairConn{t: t, tab: tab, client: "192.0.2.1", server: "198.51.100.2", cport: cport, cseq: cseq, sseq: sseq}
}

// feed decodes a frame as the reader does and hands it to the table as
// the parser does (with a request's message when the table keeps texts).
func (c *pairConn) feed(frame []byte, ts int64) (reqTs int64, paired bool) {
	c.t.Helper()
	var p packet
	if v := decodeFrame(linkEthernet, frame, &p); v != vTCP {
		c.t.Fatalf("frame decoded as %d", v)
	}
	s := segment{ts: ts, seq: p.seq, ack: p.ack, flags: p.flags}
	src := netip.AddrPortFrom(addrFrom(p.src), p.sport)
	dst := netip.AddrPortFrom(addrFrom(p.dst), p.dport)
	return observeRaw(c.tab, src, dst, p.flow, httpStart(p.payload), s, p.payload)
}

// observeRaw feeds a segment and its payload to tab as the parser stage
// does: an HTTP start is parsed once, with its framing, and handed over.
func observeRaw(tab *pairTable, src, dst netip.AddrPort, h uint32, kind msgKind, s segment, payload []byte) (reqTs int64, paired bool) {
	var m message
	if kind != notHTTP {
		parseMessage(kind, payload, &m, true)
		s.msg = &m
	}
	s.size = len(payload)
	return tab.observe(src, dst, h, kind, &s)
}

func (c *pairConn) fromClient(seq uint32, flags byte, payload string) []byte {
	return ether(etherIPv4, nil, ipv4Packet(c.client, c.server, 6, 20, 0, tcpSegmentAt(c.cport, 80, 20, seq, c.sseq, flags, payload)))
}

func (c *pairConn) fromServer(seq uint32, flags byte, payload string) []byte {
	return ether(etherIPv4, nil, ipv4Packet(c.server, c.client, 6, 20, 0, tcpSegmentAt(80, c.cport, 20, seq, c.cseq, flags, payload)))
}

// request sends a request start at ms `at`; it returns the segment's
// sequence number, for copies.
func (c *pairConn) request(at float64, payload string) uint32 {
	seq := c.cseq
	c.feed(c.requestFrame(payload), ms(at))
	return seq
}

// response sends a response start followed by body bytes (not starts,
// so not shown), and returns the pairing.
func (c *pairConn) response(ts int64, payload string, body int) (reqTs int64, paired bool) {
	return c.feed(c.responseFrame(payload, body), ts)
}

// requestFrame and responseFrame make the frame of a request or response
// start, and count its bytes (and the body's) as sent.
func (c *pairConn) requestFrame(payload string) []byte {
	f := c.fromClient(c.cseq, 0x18, payload)
	c.cseq += uint32(len(payload))
	return f
}

func (c *pairConn) responseFrame(payload string, body int) []byte {
	f := c.fromServer(c.sseq, 0x18, payload)
	c.sseq += uint32(len(payload) + body)
	return f
}

// answer sends a response start at ms `at` and checks that it is paired
// with the request sent at ms reqAt, or with none when reqAt is none.
func (c *pairConn) answer(at float64, resp string, body int, reqAt float64) {
	c.t.Helper()
	reqTs, paired := c.response(ms(at), resp, body)
	what := "response at " + strconv.FormatFloat(at, 'f', -1, 64) + "ms"
	if reqAt == none {
		wantUnpaired(c.t, what, reqTs, paired)
		return
	}
	wantPair(c.t, what, reqTs, paired, reqAt)
}

// none is answer's reqAt for a response that must not be paired.
const none = -1

// lostRequest and lostResponse are sent but not captured.
func (c *pairConn) lostRequest(payload string) { c.cseq += uint32(len(payload)) }
func (c *pairConn) lostResponse(payload string, body int) {
	c.sseq += uint32(len(payload) + body)
}

// wantPair checks that a response at ts was paired with the request sent
// at reqAt (milliseconds after pairT0).
func wantPair(t *testing.T, what string, reqTs int64, paired bool, reqAt float64) {
	t.Helper()
	if !paired {
		t.Errorf("%s: not paired, want the request at %vms", what, reqAt)
		return
	}
	if reqTs != ms(reqAt) {
		t.Errorf("%s: paired with the request at %vms, want %vms", what, float64(reqTs-pairT0)/1e6, reqAt)
	}
}

func wantUnpaired(t *testing.T, what string, reqTs int64, paired bool) {
	t.Helper()
	if paired {
		t.Errorf("%s: paired with the request at %vms, want none", what, float64(reqTs-pairT0)/1e6)
	}
}

// wantStats flushes the table and compares its counters.
func wantStats(t *testing.T, tab *pairTable, want pairStats) {
	t.Helper()
	tab.flush()
	if tab.stats != want {
		t.Errorf("counters %+v, want %+v", tab.stats, want)
	}
	if tab.used != 0 {
		t.Errorf("%d entries in use after flush", tab.used)
	}
}

func get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.0\r\n\r\n"
}

func ok(n int) string {
	return "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: " + itoa(n) + "\r\n\r\n"
}

// okChunked is a response whose length the start does not tell.
const okChunked = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"

func itoa(n int) string { return strconv.Itoa(n) }

func newTestTable(conns int) *pairTable { return newPairTable(conns, 30*time.Second) }

// newTestConn is a table with room for 16 connections, and one of them.
func newTestConn(t *testing.T) (*pairTable, *pairConn) {
	tab := newTestTable(16)
	return tab, newPairConn(t, tab, 40000, 1000, 5000)
}

func TestPairKeepAlive(t *testing.T) {
	tab, c := newTestConn(t)
	for i, at := range []float64{0, 100, 200} {
		c.request(at, get("/"+itoa(i)))
		c.answer(at+18.341, ok(3000), 3000, at)
	}
	wantStats(t, tab, pairStats{paired: 3})
}

func TestPairPipelining(t *testing.T) {
	for _, body := range []string{"content-length", "chunked"} {
		t.Run(body, func(t *testing.T) {
			tab, c := newTestConn(t)
			for i := range 3 {
				c.request(float64(i), get("/"+itoa(i)))
			}
			for i := range 3 {
				resp := ok(700)
				if body == "chunked" {
					resp = okChunked
				}
				c.answer(float64(10+i), resp, 700, float64(i))
			}
			wantStats(t, tab, pairStats{paired: 3})
		})
	}
}

func TestPairRetransmittedRequest(t *testing.T) {
	tab, c := newTestConn(t)
	req := get("/slow")
	seq := c.request(0, req)
	c.feed(c.fromClient(seq, 0x18, req), ms(200)) // the retransmission
	c.feed(c.fromClient(seq, 0x18, req), ms(600)) // and another
	c.answer(650, ok(10), 10, 0)
	// The next request is new, and pairs with the next response.
	c.request(700, get("/next"))
	c.answer(710, ok(10), 10, 700)
	// A late copy of the first request, after both answers, is still a copy.
	c.feed(c.fromClient(seq, 0x18, req), ms(720))
	wantStats(t, tab, pairStats{paired: 2, reqCopies: 3})
}

func TestPairDuplicatedResponse(t *testing.T) {
	tab, c := newTestConn(t)
	c.request(0, get("/"))
	resp := ok(100)
	frame := c.fromServer(c.sseq, 0x18, resp)
	reqTs, paired := c.feed(frame, ms(20))
	wantPair(t, "response", reqTs, paired, 0)
	reqTs, paired = c.feed(frame, ms(20.5)) // the same frame seen twice
	wantPair(t, "its copy", reqTs, paired, 0)
	c.lostResponse(resp, 100)
	c.request(30, get("/2"))
	c.answer(40, ok(100), 100, 30)
	wantStats(t, tab, pairStats{paired: 2, respCopies: 1})
}

func TestPairForgedResponse(t *testing.T) {
	// An injected response races the server's (same sequence number),
	// sent before the request reached the server: its ack does not cover
	// the request, so it answers nothing; the real one, a "copy" of it,
	// is judged afresh and answers the request.
	tab, c := newTestConn(t)
	req := get("/")
	c.request(0, req)
	c.cseq -= uint32(len(req)) // the forger acknowledges only the handshake
	reqTs, paired := c.feed(c.fromServer(c.sseq, 0x18, ok(5)), ms(8))
	wantUnpaired(t, "forged response", reqTs, paired)
	c.cseq += uint32(len(req))
	c.answer(40, ok(300), 300, 0)
	wantStats(t, tab, pairStats{paired: 1, unmatched: 1})
}

// One response missing from the capture must not shift the later pairs:
// neither when the client waits for each answer (the acknowledgement of
// its next request shows it saw the missing one), nor when it pipelines
// (the response after the missing one does not start where the one
// before it ended). Both rules are checked alone: with a known length
// and with chunked responses, whose end is not known.
// It is long because it is a table of connection scenarios.
func TestPairMissingResponse(t *testing.T) {
	t.Run("keep-alive, content-length", func(t *testing.T) {
		tab, c := newTestConn(t)
		c.request(0, get("/1"))
		c.answer(10, ok(500), 500, 0)
		c.request(20, get("/2"))
		c.lostResponse(ok(800), 800)
		c.request(40, get("/3"))
		c.answer(50, ok(500), 500, 40)
		c.request(60, get("/4"))
		c.answer(70, ok(500), 500, 60)
		wantStats(t, tab, pairStats{paired: 3, unanswered: 1})
	})
	t.Run("keep-alive, chunked", func(t *testing.T) {
		tab, c := newTestConn(t)
		c.request(0, get("/1"))
		c.answer(10, okChunked, 500, 0)
		c.request(20, get("/2"))
		c.lostResponse(okChunked, 800)
		c.request(40, get("/3"))
		c.answer(50, okChunked, 500, 40)
		wantStats(t, tab, pairStats{paired: 2, unanswered: 1})
	})
	t.Run("keep-alive, first response of the capture missing", func(t *testing.T) {
		tab, c := newTestConn(t)
		c.request(0, get("/1"))
		c.lostResponse(ok(500), 500)
		c.request(20, get("/2"))
		c.answer(30, ok(500), 500, 20)
		wantStats(t, tab, pairStats{paired: 1, unanswered: 1})
	})
	t.Run("pipelined, content-length", func(t *testing.T) {
		tab, c := newTestConn(t)
		for i := range 4 {
			c.request(float64(i), get("/"+itoa(i)))
		}
		c.answer(10, ok(300), 300, 0)
		c.lostResponse(ok(300), 300)
		c.answer(12, ok(300), 300, 2)
		c.answer(13, ok(300), 300, 3)
		wantStats(t, tab, pairStats{paired: 3, unanswered: 1})
	})
	t.Run("pipelined, a window of two requests, chunked", func(t *testing.T) {
		// The client keeps two requests in flight: it sends the next one
		// each time it has read a response. Request 2 went out before
		// response 1 began, so the acknowledgement of request 3 grows by
		// response 1, not by a missing response 2, and nothing is given up.
		tab, c := newTestConn(t)
		c.request(0, get("/1"))
		c.request(1, get("/2"))
		c.answer(10, okChunked, 300, 0)
		c.request(11, get("/3"))
		c.answer(12, okChunked, 300, 1)
		c.request(13, get("/4"))
		c.answer(14, okChunked, 300, 11)
		c.answer(15, okChunked, 300, 13)
		wantStats(t, tab, pairStats{paired: 4})
	})
	t.Run("pipelined while a response streams", func(t *testing.T) {
		// Request 2 is sent while response 1 is still arriving, request
		// 3 later still: the acknowledgements grow with response 1's
		// tail, not with a missing response. Its known length tells.
		tab, c := newTestConn(t)
		c.request(0, get("/1"))
		resp := ok(100000)
		reqTs, paired := c.feed(c.fromServer(c.sseq, 0x18, resp), ms(10))
		wantPair(t, "response 1", reqTs, paired, 0)
		start := c.sseq
		c.sseq = start + uint32(len(resp)) + 20000 // the client has read this far
		c.request(11, get("/2"))
		c.sseq = start + uint32(len(resp)) + 60000
		c.request(12, get("/3"))
		c.sseq = start + uint32(len(resp)) + 100000
		c.answer(20, ok(10), 10, 11)
		c.answer(21, ok(10), 10, 12)
		wantStats(t, tab, pairStats{paired: 3})
	})
}

func TestPairRequestAndResponseLost(t *testing.T) {
	// Request 2 and its response are both missing. Response 3 does not
	// start where response 1 ended, but request 3 was sent after the
	// client had read past that end: the missed response answered a
	// request the table never had, and request 3 is not given up.
	tab, c := newTestConn(t)
	c.request(0, get("/1"))
	c.answer(10, ok(500), 500, 0)
	c.lostRequest(get("/2"))
	c.lostResponse(ok(500), 500)
	c.request(40, get("/3"))
	c.answer(50, ok(500), 500, 40)
	wantStats(t, tab, pairStats{paired: 2})
}

func TestPairLyingLength(t *testing.T) {
	// Response 1 announces far more body than it sends, so response 2
	// starts before the end it announced: that end is dropped, and the
	// acknowledgements show response 2 missing when response 3 comes.
	tab, c := newTestConn(t)
	c.request(0, get("/1"))
	c.answer(10, ok(1000000), 10, 0)
	c.request(20, get("/2"))
	c.lostResponse(okChunked, 500)
	c.request(40, get("/3"))
	c.answer(50, okChunked, 500, 40)
	wantStats(t, tab, pairStats{paired: 2, unanswered: 1})
}

func TestPairCaptureReordered(t *testing.T) {
	// Keep-alive, but the capture shows request 2 before response 1 (two
	// interfaces, or queues read in turn). Request 2's ack is past
	// request 1's, yet response 1 cannot answer request 2, which the
	// server had not received: request 1 is not given up.
	tab, c := newTestConn(t)
	c.request(0, get("/1"))
	resp1 := c.fromServer(c.sseq, 0x18, okChunked)
	c.sseq += uint32(len(okChunked) + 100)
	c.request(11, get("/2"))
	reqTs, paired := c.feed(resp1, ms(10))
	wantPair(t, "response 1", reqTs, paired, 0)
	c.answer(20, okChunked, 100, 11)
	wantStats(t, tab, pairStats{paired: 2})
}

func TestPairPortReused(t *testing.T) {
	// The client's SYN opens the same port pair again, with a lower
	// initial sequence number: what waited is given up, and the new
	// connection's request is not taken for a copy of the old one.
	tab := newTestTable(16)
	c := newPairConn(t, tab, 40000, 3000000000, 5000)
	c.request(0, get("/old"))
	c.cseq = 1000
	c.feed(c.fromClient(c.cseq, tcpSYN, ""), ms(100))
	c.cseq++
	c.request(101, get("/new"))
	c.answer(110, ok(1), 1, 101)
	wantStats(t, tab, pairStats{paired: 1, unanswered: 1})
}

func TestPairContinue(t *testing.T) {
	tab, c := newTestConn(t)
	c.request(0, "POST /upload HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4000\r\n\r\n")
	c.answer(5, "HTTP/1.1 100 Continue\r\n\r\n", 0, 0)
	c.cseq += 4000 // the body
	// A pipelined request sent after the 100 was read: its ack is past
	// the 100, which is not a sign of a missing response.
	c.request(30, get("/next"))
	c.answer(40, ok(2), 2, 0)
	c.answer(41, ok(2), 2, 30)
	wantStats(t, tab, pairStats{paired: 2, interim: 1})
}

func TestPairEarlyHints(t *testing.T) {
	tab, c := newTestConn(t)
	c.request(0, get("/page"))
	c.answer(2, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n", 0, 0)
	c.answer(9, "HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload; as=script\r\n\r\n", 0, 0)
	c.answer(50, ok(1000), 1000, 0)
	wantStats(t, tab, pairStats{paired: 1, interim: 2})
}

func TestPairSwitchingProtocols(t *testing.T) {
	tab, c := newTestConn(t)
	c.request(0, "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	c.answer(3, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 0, 0)
	if tab.used != 0 {
		t.Errorf("%d entries in use after 101, want the connection's freed", tab.used)
	}
	// Whatever the tunnel carries is not paired, even if it looks like HTTP.
	c.answer(10, ok(10), 10, none)
	wantStats(t, tab, pairStats{paired: 1, unmatched: 1})
}

func TestPairConnect(t *testing.T) {
	tab, c := newTestConn(t)
	c.request(0, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	c.answer(30, "HTTP/1.1 200 Connection established\r\n\r\n", 0, 0)
	if tab.used != 0 {
		t.Errorf("%d entries in use after a tunnel opened, want the connection's freed", tab.used)
	}
	wantStats(t, tab, pairStats{paired: 1})
}

// Responses to HEAD, and 204 and 304, have no body whatever their
// Content-Length says: taking it for a body length would put the end of
// the response too far, and the next missing response would go unseen.
func TestPairNoBody(t *testing.T) {
	for _, tc := range []struct{ name, req, resp string }{
		{"HEAD", "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 50000\r\n\r\n"},
		{"204", get("/ping"), "HTTP/1.1 204 No Content\r\nContent-Length: 50000\r\n\r\n"},
		{"304", get("/cached"), "HTTP/1.1 304 Not Modified\r\nContent-Length: 50000\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab, c := newTestConn(t)
			c.request(0, tc.req)
			c.request(1, get("/2"))
			c.request(2, get("/3"))
			c.answer(10, tc.resp, 0, 0)
			c.lostResponse(ok(300), 300)
			c.answer(12, ok(300), 300, 2)
			wantStats(t, tab, pairStats{paired: 2, unanswered: 1})
		})
	}
}

func TestPairResponseWithoutRequest(t *testing.T) {
	t.Run("first packet of the connection", func(t *testing.T) {
		tab, c := newTestConn(t)
		c.answer(0, ok(10), 10, none)
		c.request(10, get("/"))
		c.answer(20, ok(10), 10, 10)
		wantStats(t, tab, pairStats{paired: 1, unmatched: 1})
	})
	t.Run("its request sent before the capture started", func(t *testing.T) {
		// The client pipelined request 2 before response 1 came: the
		// server had not received request 2 when it sent response 1.
		tab, c := newTestConn(t)
		c.lostRequest(get("/1"))
		c.request(1, get("/2"))
		req2End := c.cseq
		c.cseq -= uint32(len(get("/2"))) // response 1 acknowledges request 1 only
		c.answer(10, ok(10), 10, none)
		c.cseq = req2End
		c.answer(11, ok(10), 10, 1)
		wantStats(t, tab, pairStats{paired: 1, unmatched: 1})
	})
	t.Run("its request lost", func(t *testing.T) {
		// Keep-alive: request 2 is not captured; request 3 was sent after
		// response 2 had been read, so response 2 cannot answer it.
		tab, c := newTestConn(t)
		c.request(0, get("/1"))
		c.response(ms(5), okChunked, 100)
		c.lostRequest(get("/2"))
		resp2 := c.fromServer(c.sseq, 0x18, okChunked)
		c.sseq += uint32(len(okChunked) + 100)
		c.request(20, get("/3"))
		reqTs, paired := c.feed(resp2, ms(15)) // shown after request 3: a capture from two points merged
		wantUnpaired(t, "response 2", reqTs, paired)
		c.answer(25, okChunked, 100, 20)
		wantStats(t, tab, pairStats{paired: 2, unmatched: 1})
	})
}

// TestPairUnanswered is long because it is a table of ways a request goes unanswered.
func TestPairUnanswered(t *testing.T) {
	t.Run("timeout, idle connection", func(t *testing.T) {
		tab, c := newTestConn(t)
		c.request(0, get("/"))
		other := newPairConn(t, tab, 40001, 1000, 5000)
		other.request(30000, get("/"))
		if tab.stats.unanswered != 0 {
			t.Errorf("given up at 30 s, not after")
		}
		other.request(30001, get("/again"))
		if tab.stats.unanswered != 1 || tab.used != 1 {
			t.Errorf("after 30.001 s: %d unanswered, %d connections, want 1 and 1", tab.stats.unanswered, tab.used)
		}
		c.answer(30002, ok(1), 1, none)
		wantStats(t, tab, pairStats{unanswered: 3, unmatched: 1, reqCopies: 0})
	})
	t.Run("timeout, busy connection", func(t *testing.T) {
		tab, c := newTestConn(t)
		c.request(0, get("/never"))
		c.request(20000, get("/2"))
		c.request(40000, get("/3"))
		if tab.stats.unanswered != 1 {
			t.Errorf("%d unanswered, want the first request given up", tab.stats.unanswered)
		}
		c.answer(40010, ok(1), 1, 20000)
		wantStats(t, tab, pairStats{paired: 1, unanswered: 2})
	})
	for _, tc := range []struct {
		name       string
		fromClient bool
		flags      byte
		freed      bool
	}{
		{"server FIN", false, tcpFIN | tcpACK, true},
		{"server RST", false, tcpRST, true},
		{"client RST", true, tcpRST | tcpACK, true},
		{"client FIN (half-close)", true, tcpFIN | tcpACK, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab, c := newTestConn(t)
			c.request(0, get("/"))
			frame := c.fromServer(c.sseq, tc.flags, "")
			if tc.fromClient {
				frame = c.fromClient(c.cseq, tc.flags, "")
			}
			c.feed(frame, ms(1))
			if tc.freed {
				c.answer(2, ok(1), 1, none)
				wantStats(t, tab, pairStats{unanswered: 1, unmatched: 1})
			} else {
				c.answer(2, ok(1), 1, 0)
				wantStats(t, tab, pairStats{paired: 1})
			}
		})
	}
	t.Run("server FIN with the response", func(t *testing.T) {
		tab, c := newTestConn(t)
		c.request(0, get("/1"))
		c.request(1, get("/2"))
		reqTs, paired := c.feed(c.fromServer(c.sseq, tcpFIN|tcpACK|0x08, "HTTP/1.0 200 OK\r\n\r\nbye"), ms(5))
		wantPair(t, "response carrying FIN", reqTs, paired, 0)
		wantStats(t, tab, pairStats{paired: 1, unanswered: 1})
	})
}

func TestPairTableFull(t *testing.T) {
	tab := newTestTable(2)
	a := newPairConn(t, tab, 40000, 1000, 5000)
	b := newPairConn(t, tab, 40001, 1000, 5000)
	c := newPairConn(t, tab, 40002, 1000, 5000)
	a.request(0, get("/a"))
	b.request(1, get("/b"))
	a.request(2, get("/a2")) // a is now the more recent: b idles the longest
	c.request(3, get("/c"))
	if tab.stats.evicted != 1 || tab.stats.unanswered != 1 {
		t.Errorf("evicted %d, unanswered %d; want 1 and 1", tab.stats.evicted, tab.stats.unanswered)
	}
	b.answer(4, ok(1), 1, none) // on the evicted connection
	a.answer(5, ok(1), 1, 0)
	c.answer(6, ok(1), 1, 3)
	wantStats(t, tab, pairStats{paired: 2, unanswered: 2, unmatched: 1, evicted: 1})
}

func TestPairQueueOverflow(t *testing.T) {
	tab, c := newTestConn(t)
	for i := range pairDepth + 2 {
		c.request(float64(i), get("/"+itoa(i)))
	}
	for i := range pairDepth + 2 {
		want := float64(i)
		if i < 2 {
			want = none // it answers a request given up
		}
		c.answer(float64(100+i), okChunked, 10, want)
	}
	wantStats(t, tab, pairStats{paired: pairDepth, unanswered: 2, unmatched: 2})
}

func TestPairSequenceWrap(t *testing.T) {
	// Both sides start a little before 2^32: the first exchange crosses it.
	tab := newTestTable(16)
	c := newPairConn(t, tab, 40000, 0xffffffff-100, 0xffffffff-600)
	c.request(0, get("/1"))
	c.answer(10, ok(900), 900, 0)
	c.request(20, get("/2"))
	c.lostResponse(okChunked, 900)
	c.request(30, get("/3"))
	c.answer(40, ok(10), 10, 30)
	seq := c.request(50, get("/4"))
	c.feed(c.fromClient(seq, 0x18, get("/4")), ms(55)) // a copy, past the wrap
	c.answer(60, ok(10), 10, 50)
	if c.cseq > 1<<20 || c.sseq > 1<<20 {
		t.Fatalf("the sequence numbers did not wrap: %d %d", c.cseq, c.sseq)
	}
	wantStats(t, tab, pairStats{paired: 3, unanswered: 1, reqCopies: 1})
}

func TestPairEntrySize(t *testing.T) {
	// The start message and pairEntry's comment state this size.
	if n := unsafe.Sizeof(pairEntry{}); n != 232 {
		t.Errorf("pairEntry is %d bytes, the comment says 232", n)
	}
	tab := newPairTable(1000, time.Second)
	if got, want := tab.memory(), 1000*232+2048*4; got != want {
		t.Errorf("memory %d, want %d", got, want)
	}
}

func TestParseMessageFraming(t *testing.T) {
	tests := []struct {
		in     string
		status int
		hdr    int
		body   int64
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello", 200, 39, 12},
		{"HTTP/1.1 200 OK\nContent-Length:  7 \n\nbody", 200, 37, 7},
		{"HTTP/1.1 404\r\ncontent-length: 0\r\n\r\n", 404, 35, 0},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 12\r\n\r\n", 200, 67, -1},
		{"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\n", 200, 59, -1},
		{"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Length: 12\r\n\r\n", 200, 59, 12},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 200, 39, -1},
		{"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", 200, 57, -1},
		{"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n", 200, 44, -1},
		{"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: cut", 200, 0, 12},
		{"HTTP/1.1 2000 OK\r\n\r\n", -1, 20, -1},
		{"HTTP/1.1 20", -1, 0, -1},
		{"HTTP/", -1, 0, -1},
	}
	for _, tt := range tests {
		var f message
		parseMessage(response, []byte(tt.in), &f, true)
		if f.status != tt.status || f.hdrLen != tt.hdr || f.bodyLen != tt.body {
			t.Errorf("%q: status %d, header %d, body %d; want %d, %d, %d", tt.in, f.status, f.hdrLen, f.bodyLen, tt.status, tt.hdr, tt.body)
		}
	}
}

func TestMethodOf(t *testing.T) {
	for _, m := range []struct {
		text string
		code uint8
	}{{"GET", methodGET}, {"HEAD", methodHEAD}, {"POST", methodPOST}, {"PUT", methodPUT}, {"DELETE", methodDELETE},
		{"OPTIONS", methodOPTIONS}, {"TRACE", methodTRACE}, {"PATCH", methodPATCH}, {"CONNECT", methodCONNECT}} {
		if got := methodOf([]byte(m.text + " / HTTP/1.1")); got != m.code {
			t.Errorf("%s: code %d, want %d", m.text, got, m.code)
		}
	}
}

// TestPairRandom drives a small table with random traffic on many
// connections — requests, copies, responses, losses, FIN, RST, time
// passing — and checks after each step that every entry in use can be
// found (the index survives deletions) and at the end the identities of
// pairStats' comment.
func TestPairRandom(t *testing.T) {
	t.Run("text", func(t *testing.T) { pairRandom(t, false) })
	t.Run("json", func(t *testing.T) { pairRandom(t, true) })
}

// pairRandom is TestPairRandom, with texts: the table keeps the requests'
// texts (8 slots for 24 connections, so they often run out), and each
// step also checks that no slot is lost or held twice (checkTextSlots),
// and each paired response finds its own request's target or none.
// It is long because it is one random walk with the invariants checked at every step.
func pairRandom(t *testing.T, texts bool) {
	rng := rand.New(rand.NewSource(1))
	tab := newTestTable(8)
	if texts {
		tab.texts = newPairTexts(len(tab.entries), nil)
	}
	conns := make([]*pairConn, 24)
	for i := range conns {
		conns[i] = newPairConn(t, tab, uint16(40000+i), rng.Uint32(), rng.Uint32())
	}
	var requests, responses uint64
	last := map[*pairConn]string{} // the target of each connection's last request
	target := map[int64]string{}   // the target of each request, by capture time
	now := 0.0
	for step := 0; step < 20000; step++ {
		c := conns[rng.Intn(len(conns))]
		now += rng.Float64() * 200
		switch r := rng.Intn(20); {
		case r < 7:
			last[c] = fmt.Sprintf("/%06d", step) // all of one length, as the copy below needs
			target[ms(now)] = last[c]
			c.request(now, get(last[c]))
			requests++
		case r < 8:
			path := cmp.Or(last[c], "/000000")
			target[ms(now)] = path                                                        // queued, when its first copy was given up with its connection
			c.feed(c.fromClient(c.cseq-uint32(len(get(path))), 0x18, get(path)), ms(now)) // copy of the last
			requests++
		case r < 14:
			resp := []string{ok(100), okChunked, "HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 304 Not Modified\r\n\r\n"}[rng.Intn(4)]
			reqTs, paired := c.response(ms(now), resp, 100)
			if texts && paired {
				var got pairedRequest
				tab.texts.fillRequest(&got)
				if !got.truncated && string(got.target) != target[reqTs] || string(got.method) != "GET" {
					t.Fatalf("step %d: the response paired with %s carries %s %q (truncated %v)", step, target[reqTs], got.method, got.target, got.truncated)
				}
			}
			responses++
		case r < 16:
			c.lostResponse(ok(100), 100)
		case r < 17:
			c.feed(c.fromServer(c.sseq, tcpFIN|tcpACK, ""), ms(now))
		case r < 18:
			c.feed(c.fromClient(c.cseq, tcpRST, ""), ms(now))
		case r < 19:
			c.feed(c.fromClient(c.cseq-1, tcpSYN, ""), ms(now))
		default:
			now += 31000
		}
		for v := uint32(1); v <= tab.fresh; v++ {
			e := &tab.entries[v-1]
			if e.n > pairDepth {
				t.Fatalf("step %d: entry %d holds %d requests", step, v, e.n)
			}
		}
		n := 0
		for v := tab.newest; v != 0; v = tab.entries[v-1].next {
			e := &tab.entries[v-1]
			if tab.find(&e.key, e.hash) != v {
				t.Fatalf("step %d: entry %d in use but not found", step, v)
			}
			n++
		}
		if n != tab.used || n > len(tab.entries) {
			t.Fatalf("step %d: %d entries listed, %d in use", step, n, tab.used)
		}
		if texts {
			checkTextSlots(t, "step "+itoa(step), tab)
		}
	}
	tab.flush()
	if texts {
		checkTextSlots(t, "after flush", tab)
		if tab.texts.used != 0 || tab.stats.textsLost == 0 {
			t.Errorf("after flush: %d slots held, %d requests without texts (want 0, some)", tab.texts.used, tab.stats.textsLost)
		}
	}
	s := tab.stats
	if requests != s.paired+s.unanswered+s.reqCopies {
		t.Errorf("%d requests, but paired %d + unanswered %d + copies %d", requests, s.paired, s.unanswered, s.reqCopies)
	}
	if responses != s.paired+s.unmatched+s.interim+s.respCopies {
		t.Errorf("%d responses, but paired %d + unmatched %d + interim %d + copies %d", responses, s.paired, s.unmatched, s.interim, s.respCopies)
	}
	if s.paired == 0 || s.unanswered == 0 || s.unmatched == 0 || s.evicted == 0 || s.interim == 0 || s.reqCopies == 0 {
		t.Errorf("some case never happened: %+v", s)
	}
}

func TestPairAllocs(t *testing.T) {
	tab := newTestTable(64)
	c := newPairConn(t, tab, 40000, 1000, 5000)
	req, resp := []byte(get("/")), []byte(ok(10))
	client := netip.MustParseAddrPort("192.0.2.1:40000")
	server := netip.MustParseAddrPort("198.51.100.2:80")
	ts := ms(0)
	line := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(500, func() {
		ts += 1e6
		s := segment{ts: ts, seq: c.cseq, ack: c.sseq, flags: tcpACK}
		observeRaw(tab, client, server, 7, request, s, req)
		c.cseq += uint32(len(req))
		s = segment{ts: ts + 5e5, seq: c.sseq, ack: c.cseq, flags: tcpACK}
		reqTs, _ := observeRaw(tab, server, client, 7, response, s, resp)
		line = appendResponseTime(line[:0], &record{timing: timed, rt: s.ts - reqTs})
		c.sseq += uint32(len(resp) + 10)
		s.flags = tcpFIN | tcpACK
		observeRaw(tab, server, client, 7, notHTTP, s, nil)
		tab.expire(ts + 60e9)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per exchange, want 0", allocs)
	}
	if tab.stats.paired < 500 {
		t.Errorf("only %d exchanges paired", tab.stats.paired)
	}
}

func BenchmarkPair(b *testing.B) {
	// Many keep-alive connections, one exchange each in turn, as on a busy
	// server: the table is 4 times larger than the cache-friendly case.
	const conns = 1 << 16
	tab := newPairTable(conns, 30*time.Second)
	req, resp := []byte(get("/static/app.js")), []byte(ok(48213))
	server := netip.MustParseAddrPort("198.51.100.2:80")
	b.ReportAllocs()
	ts := ms(0)
	for i := 0; b.Loop(); i++ {
		n := i % conns
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(n >> 8), byte(n), 1}), 40000)
		h := uint32(n) * 0x9e3779b1
		ts += 1000
		seq := uint32(i) * 1000
		s := segment{ts: ts, seq: seq, ack: seq, flags: tcpACK}
		observeRaw(tab, client, server, h, request, s, req)
		s = segment{ts: ts + 500, seq: seq, ack: seq + uint32(len(req)), flags: tcpACK}
		observeRaw(tab, server, client, h, response, s, resp)
	}
	if tab.stats.paired == 0 {
		b.Fatal("nothing paired")
	}
}

func TestAppendResponseTime(t *testing.T) {
	for _, tt := range []struct {
		rec  record
		want string
	}{
		{record{timing: timed, rt: 18341000}, " 18.341ms"},
		{record{timing: timed, rt: 18341999}, " 18.341ms"}, // microseconds, cut
		{record{timing: timed, rt: 999}, " 0.000ms"},
		{record{timing: timed, rt: 1500 * 1e9}, " 1500000.000ms"},
		{record{timing: timed, rt: -5000}, " -0.005ms"},
		{record{timing: unpaired}, " -"},
	} {
		if got := string(appendResponseTime(nil, &tt.rec)); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.rec, got, tt.want)
		}
	}
}

// TestPairLines runs a capture through the whole pipeline with -pair and
// two parsers: CR lines get their time or "-", CQ lines are unchanged,
// a server's FIN reaches the parser of its connection (the response after
// it is not paired), and the statistics line counts it all. Without -pair
// the same capture gives the seed's lines and statistics line.
func TestPairLines(t *testing.T) {
	a := newPairConn(t, nil, 40000, 1000, 5000)
	b := newPairConn(t, nil, 40001, 7000, 9000)
	frames := [][]byte{
		a.requestFrame(get("/a")),
		b.requestFrame(get("/b")),
		b.fromServer(b.sseq, tcpFIN|tcpACK, ""),
		b.responseFrame(ok(1), 1),
		a.responseFrame(ok(3000), 3000),
	}
	at := []float64{0, 1, 2, 3, 18.341}
	path := writePcapAt(t, layers.LinkTypeEthernet, frames, func(i int) time.Time { return time.Unix(0, ms(at[i])) })
	prefix := "2019-09-01 05:16:51."
	want := map[string]bool{
		prefix + "000 192.0.2.1#40000 198.51.100.2#80 CQ GET /a HTTP/1.1 www.example.com curl/8.0": true,
		prefix + "001 192.0.2.1#40001 198.51.100.2#80 CQ GET /b HTTP/1.1 www.example.com curl/8.0": true,
		prefix + "003 198.51.100.2#80 192.0.2.1#40001 CR HTTP/1.1 200 OK 1 text/html -":            true,
		prefix + "018 198.51.100.2#80 192.0.2.1#40000 CR HTTP/1.1 200 OK 3000 text/html 18.341ms":  true,
	}
	out, stderr, code := runPipeline(t, "-r", path, "-d", "-", "-cpu", "2", "-pair")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(got) != len(want) {
		t.Errorf("%d lines, want %d:\n%s", len(got), len(want), out)
	}
	for _, l := range got {
		if !want[l] {
			t.Errorf("unexpected line %q", l)
		}
	}
	if !strings.Contains(stderr, "pairing up to 262144 connections in 62.9 MB, timeout 30s") {
		t.Errorf("the start message does not state the table's memory:\n%s", stderr)
	}
	wantStats := " paired=1 unanswered=1 unmatched=1 pair_evicted=0 interim=0 request_copies=0 response_copies=0 texts_lost=0"
	if line := lastStatsLine(stderr); !strings.HasSuffix(line, wantStats) || !strings.Contains(line, " not_http=1 ") {
		t.Errorf("statistics line %q, want not_http=1 and it to end with %q", line, wantStats)
	}

	out, stderr, code = runPipeline(t, "-r", path, "-d", "-", "-cpu", "2")
	if code != 0 || strings.Contains(out, "ms\n") || strings.Contains(out, " -\n") || strings.Contains(stderr, "paired") || strings.Contains(stderr, "pairing") {
		t.Errorf("without -pair: exit %d, lines or messages changed:\n%s%s", code, out, stderr)
	}
}

// TestPacketPathAllocsPair: with -pair, the reader's handle and the
// parser's batch still allocate nothing, for requests, responses, and the
// FIN segments the reader then hands on.
func TestPacketPathAllocsPair(t *testing.T) {
	for fname, form := range benchFormats { // text and JSON, with and without -redact
		pp := newPacketPath(&localSet{all: true}, form)
		pp.r.pair = true
		pw := newPairWorker(64, 30*time.Second, form, &counterSet{})
		pp.p.pair = &pw
		c := newPairConn(t, nil, 40000, 1000, 5000)
		frames := map[string][]byte{
			"request":    c.requestFrame(get("/")),
			"response":   c.responseFrame(ok(10), 10),
			"server FIN": c.fromServer(c.sseq, tcpFIN|tcpACK, ""),
		}
		for name, frame := range frames {
			line := pp.run(frame) // warm the buffers
			if (name == "server FIN") != (len(line) == 0) {
				t.Errorf("%s %s: line %q", fname, name, line)
			}
			if allocs := testing.AllocsPerRun(200, func() { pp.run(frame) }); allocs != 0 {
				t.Errorf("%s %s: %.1f allocations per packet, want 0", fname, name, allocs)
			}
		}
		if pp.p.pair.table.stats.reqCopies == 0 {
			t.Errorf("%s: the pairing table saw no request", fname)
		}
	}
}
