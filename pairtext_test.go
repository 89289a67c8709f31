package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
)

// checkTextSlots checks the arena of a table that keeps texts: every slot
// is held by one waiting request of an entry in use, or is on the free
// list once, or was never taken; and used counts the held ones.
func checkTextSlots(t *testing.T, what string, tab *pairTable) {
	t.Helper()
	x := tab.texts
	inUse := map[uint32]bool{}
	for v := tab.newest; v != 0; v = tab.entries[v-1].next {
		inUse[v] = true
	}
	seen := map[uint32]string{}
	for i := range x.waiting {
		v := uint32(i + 1)
		e := &tab.entries[i]
		for pos, s := range x.waiting[i] {
			if s == 0 {
				continue
			}
			waiting := (uint8(pos)+pairDepth-e.head)%pairDepth < e.n
			if !inUse[v] || !waiting {
				t.Fatalf("%s: slot %d held by position %d of entry %d, which holds no request there", what, s, pos, v)
			}
			if seen[s] != "" || s > x.fresh {
				t.Fatalf("%s: slot %d held by entry %d, and %s (or never taken)", what, s, v, seen[s])
			}
			seen[s] = "held by entry " + itoa(int(v))
		}
	}
	if len(seen) != x.used {
		t.Fatalf("%s: %d slots held, used says %d", what, len(seen), x.used)
	}
	var prev uint32
	for s := x.head; s != 0; prev, s = s, x.meta[s-1].next {
		if seen[s] != "" || s > x.fresh {
			t.Fatalf("%s: slot %d on the free list, and %s (or never taken)", what, s, seen[s])
		}
		seen[s] = "free"
	}
	if prev != x.tail {
		t.Fatalf("%s: the free list ends at %d, tail is %d", what, prev, x.tail)
	}
	if len(seen) != int(x.fresh) {
		t.Fatalf("%s: %d slots taken once, %d held or free: some are lost", what, x.fresh, len(seen))
	}
}

// textPath is the packet path of one parser with -pair and -format json:
// frames go through the reader's handle and the parser's batch, and each
// line is parsed as a JSON event.
type textPath struct {
	t   *testing.T
	pp  *packetPath
	tab *pairTable
}

func newTextPath(t *testing.T, conns int, redact bool) *textPath {
	form := lineFormat{json: true}
	if redact {
		form.redact = newRedactor(strings.Split(defaultRedactParams, ","))
	}
	pp := newPacketPath(&localSet{all: true}, form)
	pw := newPairWorker(conns, 30*time.Second, form, &counterSet{})
	pp.r.pair, pp.p.pair = true, &pw
	return &textPath{t: t, pp: pp, tab: pw.table}
}

// send runs a frame captured at ms `at`, and returns its event, or nil
// when it makes no line.
func (h *textPath) send(frame []byte, at float64) event {
	h.t.Helper()
	line := h.pp.runAt(frame, ms(at))
	if len(line) == 0 {
		return nil
	}
	ev, err := parseEvent(line)
	if err != nil {
		h.t.Fatal(err)
	}
	return ev
}

// request sends c's request start at ms `at`.
func (h *textPath) request(c *pairConn, at float64, payload string) {
	h.t.Helper()
	h.send(c.requestFrame(payload), at)
}

// texts are the request fields a response event carries: the method, the
// target and Host ("": left out), whether it says they were not all kept
// (httplog.request_truncated), and the time of the request it was paired
// with (none: not paired).
type texts struct {
	method, target, host string
	truncated            bool
	reqAt                float64
}

// response sends c's response start at ms `at` (body bytes after it) and
// checks the event's request fields.
func (h *textPath) response(c *pairConn, at float64, payload string, body int, want texts) {
	h.t.Helper()
	h.check(h.send(c.responseFrame(payload, body), at), at, want)
}

func (h *textPath) check(ev event, at float64, want texts) {
	h.t.Helper()
	_, truncated := ev["httplog.request_truncated"]
	got := texts{ev.str("http.request.method"), ev.str("url.original"), ev.str("httplog.host"), truncated, none}
	if d, ok := ev.num("event.duration"); ok {
		got.reqAt = float64(ms(at)-d-pairT0) / 1e6
	}
	if got != want {
		h.t.Errorf("response at %vms: %+v, want %+v", at, got, want)
	}
}

// TestPairTexts: with -pair and -format json, each response event carries
// the method, URI and Host of the request it answers, through the real
// packet path, and the arena gives every slot back.
// It is long because it is a table of connection scenarios.
func TestPairTexts(t *testing.T) {
	long := "/" + strings.Repeat("a", pairTextSize) // no slot holds it
	// A signed URL of 330 bytes: too long as sent, short enough redacted.
	signed := "/bucket/report.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20190901%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20190901T051651Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	req := func(method, target, host string) string {
		s := method + " " + target + " HTTP/1.1\r\n"
		if host != "" {
			s += "Host: " + host + "\r\n"
		}
		return s + "User-Agent: curl/8.0\r\n\r\n"
	}
	cont := "HTTP/1.1 100 Continue\r\n\r\n"
	tests := []struct {
		name    string
		conns   int  // the table's connections, and slots
		redact  bool // -redact
		play    func(h *textPath, a, b *pairConn)
		lost    uint64 // requests whose texts were not all kept
		secrets []string
	}{
		{"keep-alive", 16, false, func(h *textPath, a, _ *pairConn) {
			h.request(a, 0, req("GET", "/a", "a.example"))
			h.response(a, 5, ok(10), 10, texts{"GET", "/a", "a.example", false, 0})
			h.request(a, 10, req("POST", "/b?x=1", "b.example"))
			h.response(a, 12, ok(10), 10, texts{"POST", "/b?x=1", "b.example", false, 10})
		}, 0, nil},
		{"pipelining", 16, false, func(h *textPath, a, _ *pairConn) {
			h.request(a, 0, req("GET", "/1", "h"))
			h.request(a, 1, req("HEAD", "/2", "h"))
			h.request(a, 2, req("DELETE", "/3", "h"))
			h.response(a, 10, ok(5), 5, texts{"GET", "/1", "h", false, 0})
			h.response(a, 11, ok(5), 0, texts{"HEAD", "/2", "h", false, 1})
			h.response(a, 12, ok(5), 5, texts{"DELETE", "/3", "h", false, 2})
		}, 0, nil},
		{"two connections, interleaved", 16, false, func(h *textPath, a, b *pairConn) {
			h.request(a, 0, req("GET", "/a", "a"))
			h.request(b, 1, req("GET", "/b", "b"))
			h.response(b, 2, ok(5), 5, texts{"GET", "/b", "b", false, 1})
			h.response(a, 3, ok(5), 5, texts{"GET", "/a", "a", false, 0})
		}, 0, nil},
		{"redacted", 16, true, func(h *textPath, a, _ *pairConn) {
			h.request(a, 0, req("GET", "/login?user=me&token=s3cret#x", "h"))
			h.response(a, 5, ok(10), 10, texts{"GET", "/login?user=me&token=REDACTED#x", "h", false, 0})
			h.request(a, 10, req("GET", "http://me:pa55@h/", "h"))
			h.response(a, 15, ok(10), 10, texts{"GET", "http://REDACTED:REDACTED@h/", "h", false, 10})
			h.request(a, 20, req("GET", signed, "files.example.com"))
			h.response(a, 25, ok(10), 10, texts{"GET", strings.NewReplacer("AKIAIOSFODNN7EXAMPLE%2F20190901%2Fus-east-1%2Fs3%2Faws4_request", "REDACTED",
				"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "REDACTED").Replace(signed), "files.example.com", false, 20})
		}, 0, []string{"s3cret", "pa55", "AKIAIOSFODNN7EXAMPLE", "0123456789abcdef"}},
		{"not redacted: longer than a slot", 16, false, func(h *textPath, a, _ *pairConn) {
			h.request(a, 0, req("GET", signed, "files.example.com"))
			h.response(a, 5, ok(10), 10, texts{"GET", "", "files.example.com", true, 0})
		}, 1, nil},
		{"longer than a slot", 16, false, func(h *textPath, a, _ *pairConn) {
			h.request(a, 0, req("GET", long, "h"))
			h.request(a, 1, req("GET", long, ""))
			h.request(a, 2, req("GET", "/"+strings.Repeat("a", pairTextSize-2), "h"))  // exactly a slot
			h.request(a, 3, req("GET", "/a", strings.Repeat("h", pairTextSize+1)))     // a Host longer than a slot
			h.request(a, 4, req("GET", "/"+strings.Repeat("a", pairTextSize-2), "hh")) // a byte too long
			h.response(a, 10, ok(5), 5, texts{"GET", "", "h", true, 0})
			h.response(a, 11, ok(5), 5, texts{"GET", "", "", true, 1})
			h.response(a, 12, ok(5), 5, texts{"GET", "/" + strings.Repeat("a", pairTextSize-2), "h", false, 2})
			h.response(a, 13, ok(5), 5, texts{"GET", "", "", true, 3})
			h.response(a, 14, ok(5), 5, texts{"GET", "", "hh", true, 4})
		}, 4, nil},
		{"no Host", 16, false, func(h *textPath, a, _ *pairConn) {
			h.request(a, 0, "GET /old HTTP/1.0\r\n\r\n")
			h.response(a, 5, "HTTP/1.0 200 OK\r\n\r\n", 0, texts{"GET", "/old", "", false, 0})
		}, 0, nil},
		{"100 Continue", 16, false, func(h *textPath, a, _ *pairConn) {
			h.request(a, 0, req("PUT", "/up", "h"))
			h.response(a, 1, cont, 0, texts{"PUT", "/up", "h", false, 0})
			h.response(a, 9, ok(0), 0, texts{"PUT", "/up", "h", false, 0})
		}, 0, nil},
		{"response copies", 16, false, func(h *textPath, a, _ *pairConn) {
			h.request(a, 0, req("PUT", "/up", "h"))
			f := a.responseFrame(cont, 0)
			h.check(h.send(f, 1), 1, texts{"PUT", "/up", "h", false, 0})
			h.check(h.send(f, 2), 2, texts{"PUT", "/up", "h", false, 0})
			f = a.responseFrame(ok(3), 3)
			h.check(h.send(f, 5), 5, texts{"PUT", "/up", "h", false, 0})
			h.check(h.send(f, 300), 300, texts{"PUT", "/up", "h", false, 0})
		}, 0, nil},
		{"retransmitted request", 16, false, func(h *textPath, a, _ *pairConn) {
			f := a.requestFrame(req("GET", "/once", "h"))
			h.send(f, 0)
			h.send(f, 200)
			h.response(a, 210, ok(3), 3, texts{"GET", "/once", "h", false, 0})
		}, 0, nil},
		{"slots run out", 2, false, func(h *textPath, a, b *pairConn) {
			for i := range 3 {
				h.request(a, float64(i), req("GET", "/a"+itoa(i), "h"))
			}
			h.request(b, 3, req("OPTIONS", "*", "h")) // b has no slot either
			for i := range 3 {
				want := texts{"GET", "/a" + itoa(i), "h", false, float64(i)}
				if i == 2 {
					want = texts{"GET", "", "", true, 2} // the method is the table's own
				}
				h.response(a, float64(10+i), ok(5), 5, want)
			}
			h.response(b, 13, ok(5), 5, texts{"OPTIONS", "", "", true, 3})
			h.request(b, 14, req("GET", "/b", "h")) // slots are free again
			h.response(b, 15, ok(5), 5, texts{"GET", "/b", "h", false, 14})
		}, 2, nil},
		{"a copy after its slot was taken again", 1, false, func(h *textPath, a, _ *pairConn) {
			h.request(a, 0, req("GET", "/a", "h"))
			f := a.responseFrame(ok(3), 3)
			h.check(h.send(f, 5), 5, texts{"GET", "/a", "h", false, 0})
			h.request(a, 10, req("GET", "/b", "h")) // takes the one slot
			h.check(h.send(f, 11), 11, texts{"GET", "", "", true, 0})
			h.response(a, 12, ok(3), 3, texts{"GET", "/b", "h", false, 10})
		}, 0, nil},
		{"eviction gives the slot back", 1, false, func(h *textPath, a, b *pairConn) {
			h.request(a, 0, req("GET", "/a", "h"))
			h.request(b, 1, req("GET", "/b", "h")) // evicts a
			h.response(a, 2, ok(3), 3, texts{"", "", "", false, none})
			h.response(b, 3, ok(3), 3, texts{"GET", "/b", "h", false, 1})
		}, 0, nil},
		{"an idle connection's timeout gives the slots back", 2, false, func(h *textPath, a, b *pairConn) {
			h.request(a, 0, req("GET", "/a", "h"))
			h.request(a, 1, req("GET", "/a2", "h"))
			h.request(b, 31000, req("GET", "/b", "h")) // no slot; then a, idle past the timeout, expires
			h.request(b, 31001, req("GET", "/b2", "h"))
			h.request(b, 31002, req("GET", "/b3", "h"))
			h.response(b, 31003, ok(3), 3, texts{"GET", "", "", true, 31000})
			h.response(b, 31004, ok(3), 3, texts{"GET", "/b2", "h", false, 31001})
			h.response(b, 31005, ok(3), 3, texts{"GET", "/b3", "h", false, 31002})
		}, 1, nil},
		{"a request's timeout gives its slot back", 1, false, func(h *textPath, a, _ *pairConn) {
			h.request(a, 0, req("GET", "/a", "h"))
			h.request(a, 31000, req("GET", "/a2", "h")) // gives /a up first
			h.response(a, 31001, ok(3), 3, texts{"GET", "/a2", "h", false, 31000})
		}, 0, nil},
		{"server FIN and RST give the slots back", 2, false, func(h *textPath, a, b *pairConn) {
			h.request(a, 0, req("GET", "/a", "h"))
			h.send(a.fromServer(a.sseq, tcpFIN|tcpACK, ""), 1)
			h.request(b, 2, req("GET", "/b", "h"))
			h.send(b.fromClient(b.cseq, tcpRST, ""), 3)
			h.request(a, 4, req("GET", "/a2", "h"))
			h.request(a, 5, req("GET", "/a3", "h"))
			h.response(a, 6, ok(3), 3, texts{"GET", "/a2", "h", false, 4})
			h.response(a, 7, ok(3), 3, texts{"GET", "/a3", "h", false, 5})
		}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTextPath(t, tt.conns, tt.redact)
			a := newPairConn(t, nil, 40000, 1000, 5000)
			b := newPairConn(t, nil, 40001, 7000, 9000)
			tt.play(h, a, b)
			if h.tab.stats.textsLost != tt.lost {
				t.Errorf("texts_lost %d, want %d", h.tab.stats.textsLost, tt.lost)
			}
			for _, s := range tt.secrets {
				if bytes.Contains(h.tab.texts.buf, []byte(s)) || bytes.Contains(h.tab.texts.scratch[:cap(h.tab.texts.scratch)], []byte(s)) {
					t.Errorf("the arena holds %q", s)
				}
			}
			checkTextSlots(t, "before flush", h.tab)
			h.tab.flush()
			checkTextSlots(t, "after flush", h.tab)
			if h.tab.texts.used != 0 {
				t.Errorf("%d slots held after flush", h.tab.texts.used)
			}
		})
	}
}

// TestPairTextsAllocs: keeping a request's texts (redacted or not) and
// filling its response's event allocate nothing, exchange after exchange
// (TestPacketPathAllocsPair repeats one frame, whose copies keep nothing).
func TestPairTextsAllocs(t *testing.T) {
	for _, redact := range []bool{false, true} {
		h := newTextPath(t, 64, redact)
		c := newPairConn(t, nil, 40000, 1000, 5000)
		type exchange struct{ req, resp []byte }
		var xs []exchange
		for i := range 300 {
			target := "/f?X-Amz-Signature=" + strings.Repeat("0", 64) + "&i=" + itoa(i)
			xs = append(xs, exchange{c.requestFrame(get(target)), c.responseFrame(ok(10), 10)})
		}
		i := 0
		allocs := testing.AllocsPerRun(250, func() {
			h.pp.runAt(xs[i].req, ms(float64(2*i)))
			h.pp.runAt(xs[i].resp, ms(float64(2*i+1)))
			i++
		})
		if allocs != 0 {
			t.Errorf("redact %v: %.1f allocations per exchange, want 0", redact, allocs)
		}
		if h.tab.stats.paired != uint64(i) || h.tab.texts.fresh == 0 || h.tab.stats.textsLost != 0 {
			t.Errorf("redact %v: %d exchanges paired of %d, %d slots taken, %d texts lost", redact, h.tab.stats.paired, i, h.tab.texts.fresh, h.tab.stats.textsLost)
		}
	}
}

// TestPairTextsPipeline: the whole pipeline with -pair -format json and
// two parsers: each response event carries its own request's texts,
// redacted with -redact, the start message states the memory of the
// texts, and the statistics line counts the texts not kept. The text
// format allocates no arena.
func TestPairTextsPipeline(t *testing.T) {
	a := newPairConn(t, nil, 40000, 1000, 5000)
	b := newPairConn(t, nil, 40001, 7000, 9000)
	frames := [][]byte{
		a.requestFrame("GET /a?token=s3cret HTTP/1.1\r\nHost: a.example\r\n\r\n"),
		b.requestFrame("POST /" + strings.Repeat("b", pairTextSize) + " HTTP/1.1\r\nHost: b.example\r\n\r\n"),
		b.responseFrame(ok(1), 1),
		a.responseFrame(ok(3000), 3000),
	}
	at := []float64{0, 1, 3, 18.341} // ms
	path := writePcapAt(t, layers.LinkTypeEthernet, frames, func(i int) time.Time { return time.Unix(0, ms(at[i])) })
	out, stderr, code := runPipeline(t, "-r", path, "-d", "-", "-cpu", "2", "-pair", "-format", "json", "-redact")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.SplitAfter(out, "\n")
	if len(lines) != 5 {
		t.Fatalf("%d events, want 4:\n%s", len(lines)-1, out)
	}
	want := map[string]struct { // by the response's destination port: its time and texts
		at float64
		texts
	}{
		"40000": {18.341, texts{"GET", "/a?token=REDACTED", "a.example", false, 0}},
		"40001": {3, texts{"POST", "", "b.example", true, 1}},
	}
	h := &textPath{t: t}
	responses := 0
	for _, l := range lines[:4] {
		ev, err := parseEvent([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		if ev.str("event.action") == "response" {
			w := want[ev["destination.port"].(json.Number).String()]
			h.check(ev, w.at, w.texts)
			responses++
		}
	}
	if responses != 2 {
		t.Errorf("%d response events, want 2", responses)
	}
	// -pair_max 262144 over two parsers: 131072 connections and slots each.
	table := 2 * (131072*232 + 262144*4)
	arena := 2 * (131072*(pairTextSize+12+4*pairDepth+12) + 8*pairTryMax + 16)
	stated := fmt.Sprintf("pairing up to 262144 connections in %.1f MB (%.1f MB of it the waiting requests' URIs and Hosts, %d bytes each), timeout 30s",
		float64(table+arena)/1e6, float64(arena)/1e6, pairTextSize)
	if !strings.Contains(stderr, stated) {
		t.Errorf("the start message does not say %q:\n%s", stated, stderr)
	}
	if line := lastStatsLine(stderr); !strings.HasSuffix(line, " paired=2 unanswered=0 unmatched=0 pair_evicted=0 interim=0 request_copies=0 response_copies=0 texts_lost=1") {
		t.Errorf("statistics line %q", line)
	}
	_, stderr, _ = runPipeline(t, "-r", path, "-d", "-", "-cpu", "2", "-pair")
	if !strings.Contains(stderr, "pairing up to 262144 connections in 62.9 MB, timeout 30s") {
		t.Errorf("the text format's table is not 62.9 MB:\n%s", stderr)
	}
}

// TestPairMemoryJSON is TestPairMemory with -format json: each of the
// 1,000,000 unanswered requests holds a slot of the arena with its texts,
// so the peak resident memory with -pair exceeds that of the same JSON
// run without it by no more than the start message states, table and
// arena (552 MB), and nothing is lost.
func TestPairMemoryJSON(t *testing.T) {
	const conns = 1000000
	bin := pairPlainBinary(t)
	plainErr, plain := pairPeakMemory(t, bin, conns, "-format", "json")
	pairErr, paired := pairPeakMemory(t, bin, conns, "-format", "json", "-pair", "-pair_max", itoa(conns))
	stats := parseStats(t, pairErr)
	if stats["CQ"] != conns || stats["unanswered"] != conns || stats["pair_evicted"] != 0 || stats["texts_lost"] != 0 {
		t.Errorf("want CQ=unanswered=%d, pair_evicted=0, texts_lost=0: %s", conns, lastStatsLine(pairErr))
	}
	if s := parseStats(t, plainErr); s["CQ"] != conns {
		t.Errorf("without -pair: CQ=%d, want %d: %s", s["CQ"], conns, lastStatsLine(plainErr))
	}
	var stated, arena float64
	if _, err := fmt.Sscanf(pairErr[strings.Index(pairErr, "pairing up to "):], "pairing up to 1000000 connections in %f MB (%f MB", &stated, &arena); err != nil {
		t.Fatalf("the start message does not state the table's and the texts' memory (%v):\n%s", err, pairErr)
	}
	more := (float64(paired) - float64(plain)) / 1e6
	t.Logf("stated %.1f MB (%.1f MB of texts); peak RSS %.1f MB with -pair, %.1f MB without: %.1f MB more", stated, arena, float64(paired)/1e6, float64(plain)/1e6, more)
	if more > stated+1 { // 1 MB for what differs from run to run, as in TestPairMemory
		t.Errorf("-pair added %.1f MB of peak RSS, more than the %.1f MB the start message states", more, stated)
	}
	if more < stated-arena { // the texts were kept somewhere, and not on Go's heap twice
		t.Errorf("-pair added %.1f MB of peak RSS, less than the table alone (%.1f MB)", more, stated-arena)
	}
}
