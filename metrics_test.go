package main

// Tests of /metrics in-process: the exposition read back by Prometheus'
// own text parser (expfmt, a test-only dependency), the histograms, the
// labels of the parsers' counts, the handler, and that a reading takes
// no lock.

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseExposition reads an exposition with Prometheus' text parser, with
// the metric names of the classic (legacy) format.
func parseExposition(t testing.TB, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus' text parser: %v\n%s", err, text)
	}
	return fams
}

// findMetric returns the metric of family name whose labels are exactly
// labels (name, value pairs), or nil.
func findMetric(fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	for _, m := range fams[name].GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			i := slices.Index(labels, l.GetName())
			if i < 0 || i%2 != 0 || labels[i+1] != l.GetValue() {
				match = false
			}
		}
		if match {
			return m
		}
	}
	return nil
}

// counterValue is the value of a counter or gauge sample; ok is false when
// it is not there.
func counterValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	m := findMetric(fams, name, labels...)
	switch {
	case m == nil:
		return 0, false
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	}
	return 0, false
}

// publishedMessages is what a parser set counts of messages, all labels.
func publishedMessages(s *parserSet) uint64 {
	var n uint64
	for t := range s.requests {
		for i := range s.requests[t] {
			n += s.requests[t][i].Load()
		}
		for i := range s.responses[t] {
			n += s.responses[t][i].Load()
		}
	}
	return n
}

// TestExposition: what /metrics writes parses with Prometheus' text
// parser, every counter of the statistics line is there with its value
// and the registry's help text, each family has its type, and the
// parsers' counts are summed over the parsers.
// It is long because it fills every family and parses the whole exposition.
func TestExposition(t *testing.T) {
	reg := &registry{}
	a, b := reg.newSet(), reg.newSet()
	var v counterValues
	for id := range v {
		v[id] = uint64(id)*1000 + 1 // a different value each
	}
	a.publish(&v)
	b.add(cPackets, 5)
	b.add(cSR, 2)
	p1, p2 := reg.newParserSet(), reg.newParserSet()
	var c1, c2 parserCounts
	for _, m := range []struct {
		c     *parserCounts
		t     lineType
		kind  msgKind
		start string
	}{
		{&c1, typeCQ, request, "GET / HTTP/1.1"},
		{&c2, typeCQ, request, "GET /x HTTP/1.0"},
		{&c2, typeSQ, request, "CONNECT h:443 HTTP/1.1"},
		{&c1, typeCR, response, "HTTP/1.1 503 Service Unavailable"},
		{&c2, typeCR, response, "HTTP/1.1 500"},
		{&c1, typeSR, response, "HTTP/1.0 99 Odd"},
		{&c1, typeSR, response, "HTTP/1.1 204 No Content"},
	} {
		var msg message
		parseMessage(m.kind, []byte(m.start), &msg, false)
		m.c.count(m.t, m.kind, &msg)
	}
	p1.publish(&c1)
	p2.publish(&c2)
	text := appendMetrics(nil, reg, metricsInfo{ringBytes: 8 << 20, readers: 1, parsers: 2})
	fams := parseExposition(t, text)

	sum := reg.read()
	for id, def := range counterDefs {
		name, labels := "httplog_"+def.name+"_total", []string(nil)
		if isPairCounter(counterID(id)) {
			if _, ok := fams[name]; ok {
				t.Errorf("%s without -pair", name)
			}
			continue
		}
		if counterID(id) >= cCQ && counterID(id) <= cSR {
			name, labels = "httplog_http_messages_total", []string{"type", def.name}
		} else if fams[name].GetHelp() != def.help {
			t.Errorf("%s: help %q, want the registry's %q", name, fams[name].GetHelp(), def.help)
		}
		if got, ok := counterValue(fams, name, labels...); !ok || got != float64(sum[id]) {
			t.Errorf("%s%q = %v (present: %v), want %d", name, labels, got, ok, sum[id])
		}
		if typ := fams[name].GetType(); typ != dto.MetricType_COUNTER {
			t.Errorf("%s is a %v, want a counter", name, typ)
		}
	}
	if _, ok := counterValue(fams, "httplog_cq_total"); ok || len(fams["httplog_http_messages_total"].GetMetric()) != 4 {
		t.Errorf("lines by type: want the four series of httplog_http_messages_total only")
	}
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"httplog_http_requests_total", []string{"type", "CQ", "method", "GET"}, 2},
		{"httplog_http_requests_total", []string{"type", "SQ", "method", "CONNECT"}, 1},
		{"httplog_http_requests_total", []string{"type", "SQ", "method", "GET"}, 0},
		{"httplog_http_responses_total", []string{"type", "CR", "class", "5xx"}, 2},
		{"httplog_http_responses_total", []string{"type", "SR", "class", "other"}, 1},
		{"httplog_http_responses_total", []string{"type", "SR", "class", "2xx"}, 1},
		{"httplog_http_responses_total", []string{"type", "CR", "class", "1xx"}, 0},
		{"httplog_ring_bytes", nil, 8 << 20},
		{"httplog_readers", nil, 1},
		{"httplog_parsers", nil, 2},
		{"httplog_processors", nil, float64(runtime.GOMAXPROCS(0))},
		{"httplog_build_info", []string{"version", version, "goversion", runtime.Version()}, 1},
	} {
		if got, ok := counterValue(fams, w.name, w.labels...); !ok || got != w.want {
			t.Errorf("%s%q = %v (present: %v), want %v", w.name, w.labels, got, ok, w.want)
		}
	}
	// Every label value from the start, at 0: the nine methods (no
	// _OTHER, which no request has), the six classes, by type.
	if n := len(fams["httplog_http_requests_total"].GetMetric()); n != 2*9 {
		t.Errorf("%d request series, want 18", n)
	}
	if n := len(fams["httplog_http_responses_total"].GetMetric()); n != 2*6 {
		t.Errorf("%d response series, want 12", n)
	}
	for _, name := range []string{"httplog_ring_bytes", "httplog_readers", "httplog_parsers", "httplog_processors", "httplog_build_info"} {
		if typ := fams[name].GetType(); typ != dto.MetricType_GAUGE {
			t.Errorf("%s is a %v, want a gauge", name, typ)
		}
	}
	// Without -pair, no histogram.
	if bytes.Contains(text, []byte("duration")) {
		t.Errorf("histograms without -pair:\n%s", text)
	}
}

// TestDurationHistograms: with -pair, observations land in the bucket
// whose bound is the first at or above them (le), buckets are cumulative
// and end in +Inf equal to _count, _sum is in seconds, parsers are summed,
// labels are bounded (_OTHER), and OpenTelemetry's bounds are the le
// labels; the pairing counters are there too.
// It is long because it observes a table of times and checks every bucket.
func TestDurationHistograms(t *testing.T) {
	reg := &registry{pair: true}
	p1, p2 := reg.newParserSet(), reg.newParserSet()
	const ms = int64(time.Millisecond)
	p1.durations.observe(typeCR, methodGET, 200, 5*ms)   // on the first bound: le="0.005"
	p2.durations.observe(typeCR, methodGET, 200, 5*ms+1) // just above it: le="0.01"
	p2.durations.observe(typeCR, methodGET, 200, -3*ms)  // clock stepped back: 0
	p1.durations.observe(typeCR, methodGET, 200, 10e9)   // the last bound: le="10"
	p1.durations.observe(typeCR, methodGET, 200, 10e9+1) // beyond: +Inf only
	p1.durations.observe(typeSR, methodPOST, 404, 60*ms)
	p1.durations.observe(typeSR, methodPOST, 600, 60*ms) // no such code: _OTHER
	p1.durations.observe(typeSR, methodPOST, 0, 60*ms)   // none: _OTHER
	p1.durations.observe(typeSR, 200, 302, 60*ms)        // no such method: _OTHER
	pairing := reg.newSet()
	pairing.add(cPaired, 8)
	pairing.add(cResponseCopies, 1)
	text := appendMetrics(nil, reg, metricsInfo{})
	fams := parseExposition(t, text)

	// With -pair, the pairing counters of the statistics line too.
	for id, def := range counterDefs {
		if v, ok := counterValue(fams, "httplog_"+def.name+"_total"); isPairCounter(counterID(id)) && (!ok || v != float64(reg.read()[id])) {
			t.Errorf("httplog_%s_total = %v (present: %v) with -pair", def.name, v, ok)
		}
	}
	server := "http_server_request_duration_seconds"
	for _, name := range []string{server, "http_client_request_duration_seconds"} {
		if typ := fams[name].GetType(); typ != dto.MetricType_HISTOGRAM {
			t.Fatalf("%s is a %v, want a histogram\n%s", name, typ, text)
		}
	}
	les := []string{"0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5", "5", "7.5", "10"}
	h := findMetric(fams, server, "http_request_method", "GET", "http_response_status_code", "200").GetHistogram()
	if h == nil {
		t.Fatalf("no server series GET 200:\n%s", text)
	}
	var bounds []string
	var cum []uint64
	for _, b := range h.GetBucket() {
		bounds = append(bounds, strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64))
		cum = append(cum, b.GetCumulativeCount())
	}
	wantCum := []uint64{2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 5}
	if !slices.Equal(bounds, append(les, "+Inf")) || !slices.Equal(cum, wantCum) {
		t.Errorf("buckets %v %v, want %v %v", bounds, cum, append(les, "+Inf"), wantCum)
	}
	if h.GetSampleCount() != 5 || math.Abs(h.GetSampleSum()-(0.005+0.005000001+0+10+10.000000001)) > 1e-9 {
		t.Errorf("count %d sum %v, want 5 and 20.010000002", h.GetSampleCount(), h.GetSampleSum())
	}
	client := "http_client_request_duration_seconds"
	for _, s := range [][2]string{{"POST", "404"}, {"POST", "_OTHER"}, {"_OTHER", "302"}} {
		h := findMetric(fams, client, "http_request_method", s[0], "http_response_status_code", s[1]).GetHistogram()
		want := uint64(1)
		if s[1] == "_OTHER" {
			want = 2
		}
		if h.GetSampleCount() != want || h.GetBucket()[4].GetCumulativeCount() != want || h.GetBucket()[3].GetCumulativeCount() != 0 {
			t.Errorf("client %s %s: %v, want %d in le=0.075 and none below", s[0], s[1], h, want)
		}
	}
	if n := len(fams[server].GetMetric()) + len(fams[client].GetMetric()); n != 4 {
		t.Errorf("%d series, want 4:\n%s", n, text)
	}
}

// TestDurationSeriesBounded: a parser tells apart as many series as it
// has room for, keeping room for the _OTHER series of every method; beyond
// that, new status codes count as _OTHER, and nothing is lost.
func TestDurationSeriesBounded(t *testing.T) {
	reg := &registry{pair: true}
	d := reg.newParserSet().durations
	for _, typ := range []lineType{typeCR, typeSR} {
		for code := 100; code < 600; code++ {
			d.observe(typ, methodGET, code, 1)
		}
	}
	for m := range numMethods {
		d.observe(typeSR, m, 0, 1)
	}
	fams := parseExposition(t, appendMetrics(nil, reg, metricsInfo{}))
	server, client := histogramNames[0], histogramNames[1]
	own := maxHistograms - 2*int(numMethods) // series of their own code: 100…334
	count := func(name, method, status string) uint64 {
		return findMetric(fams, name, "http_request_method", method, "http_response_status_code", status).GetHistogram().GetSampleCount()
	}
	var total uint64
	series := 0
	for _, name := range histogramNames {
		for _, m := range fams[name].GetMetric() {
			total += m.GetHistogram().GetSampleCount()
			series++
		}
	}
	if total != 2*500+uint64(numMethods) || series > maxHistograms {
		t.Errorf("%d observations in %d series, want %d in at most %d", total, series, 2*500+int(numMethods), maxHistograms)
	}
	last := strconv.Itoa(100 + own - 1)
	if count(server, "GET", "100") != 1 || count(server, "GET", last) != 1 || findMetric(fams, server, "http_request_method", "GET", "http_response_status_code", strconv.Itoa(100+own)) != nil {
		t.Errorf("server GET: codes 100…%s want a series each, and no more", last)
	}
	if got := count(server, "GET", "_OTHER"); got != uint64(500-own) {
		t.Errorf("server GET _OTHER: %d, want %d", got, 500-own)
	}
	if got := count(client, "GET", "_OTHER"); got != 501 {
		t.Errorf("client GET _OTHER: %d, want 501", got)
	}
	for _, m := range methodNames {
		if m != "GET" && count(client, m, "_OTHER") != 1 {
			t.Errorf("client %s _OTHER: want 1", m)
		}
	}
}

// TestObserveAllocs: observing a response time allocates nothing, for a
// new series as for a known one.
func TestObserveAllocs(t *testing.T) {
	d := (&registry{pair: true}).newParserSet().durations
	code := 100
	if a := testing.AllocsPerRun(200, func() {
		d.observe(typeCR, methodGET, code, 42e6)
		code++
	}); a != 0 {
		t.Errorf("new series: %.1f allocations per observation", a)
	}
	if a := testing.AllocsPerRun(200, func() { d.observe(typeSR, methodPOST, 200, 42e6) }); a != 0 {
		t.Errorf("known series: %.1f allocations per observation", a)
	}
}

// TestExpositionEscaping: label values and help texts with a backslash,
// a double quote and a line break read back as written.
func TestExpositionEscaping(t *testing.T) {
	odd := "go1.27 \"devel\" C:\\go\nnext"
	var b []byte
	b = appendHeader(b, "x_info", "a \\ help\nof two lines", "gauge")
	b = appendUint(appendSeries(b, "x_info", "goversion", odd, "other", `\"`), 1)
	fams := parseExposition(t, b)
	if fams["x_info"].GetHelp() != "a \\ help\nof two lines" {
		t.Errorf("help read back as %q", fams["x_info"].GetHelp())
	}
	if v, ok := counterValue(fams, "x_info", "goversion", odd, "other", `\"`); !ok || v != 1 {
		t.Errorf("labels not read back:\n%s", b)
	}
}

func TestParseStatus(t *testing.T) {
	for line, want := range map[string]int{
		"HTTP/1.1 200 OK":  200,
		"HTTP/1.1 404":     404,
		"HTTP/1.0 999 Odd": 999,
		"HTTP/1.1 000 Z":   0,
		"HTTP/1.1 20 OK":   -1,
		"HTTP/1.1 2000 OK": -1,
		"HTTP/1.1 2x0 OK":  -1,
		"HTTP/1.1  200 OK": -1,
		"HTTP/1.1":         -1,
		"":                 -1,
	} {
		if _, got := parseStatus([]byte(line)); got != want {
			t.Errorf("parseStatus(%q) = %d, want %d", line, got, want)
		}
	}
	for code, want := range map[int]string{-1: "other", 0: "other", 99: "other", 100: "1xx", 204: "2xx", 399: "3xx", 451: "4xx", 599: "5xx", 600: "other"} {
		if got := classNames[statusClass(code)]; got != want {
			t.Errorf("class of %d: %s, want %s", code, got, want)
		}
	}
	// Every request httpStart accepts has a method of its own.
	for _, m := range methodNames[1:] {
		req := []byte(m + " / HTTP/1.1")
		if httpStart(req) != request || methodNames[methodOf(req)] != m {
			t.Errorf("%s: method %s", m, methodNames[methodOf(req)])
		}
	}
}

// TestRegistryReadsWithoutLock: neither the statistics line's reading nor
// the exposition waits for the registry's lock, which only adding a set
// takes: a reader that writes the statistics line never waits for a scrape.
func TestRegistryReadsWithoutLock(t *testing.T) {
	reg := &registry{pair: true}
	reg.newSet().add(cPackets, 7)
	reg.newParserSet().durations.observe(typeCR, methodGET, 200, 1)
	reg.mu.Lock()
	defer reg.mu.Unlock()
	done := make(chan string)
	go func() {
		v := reg.read()
		done <- fmt.Sprint(v[cPackets], " ", len(appendMetrics(nil, reg, metricsInfo{})) > 0)
	}()
	select {
	case got := <-done:
		if got != "7 true" {
			t.Errorf("read %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reading the registry waits for its lock")
	}
}

// serveTestMetrics serves reg's /metrics on a free port of 127.0.0.1.
func serveTestMetrics(t *testing.T, reg *registry) *metricsServer {
	t.Helper()
	m, err := listenMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.serve(reg, metricsInfo{}, log.New(io.Discard, "", 0))
	return m
}

// TestMetricsServer: Go's HTTP client, as a scraper would, gets
// /metrics in the text format's content type and /healthz; other paths
// and methods, and requests that are not HTTP/1, get their error; HEAD
// gets the length of GET and no body.
func TestMetricsServer(t *testing.T) {
	reg := &registry{}
	reg.newSet().add(cCQ, 3)
	m := serveTestMetrics(t, reg)
	defer m.close()
	url := "http://" + m.ln.Addr().String()
	size := len(appendMetrics(nil, reg, metricsInfo{}))
	for _, tt := range []struct {
		method, path string
		code         int
		ctype, body  string
		length       int // Content-Length, if not -1
	}{
		{"GET", "/metrics", 200, "text/plain; version=0.0.4; charset=utf-8", `httplog_http_messages_total{type="CQ"} 3` + "\n", size},
		{"GET", "/metrics?x=1", 200, "text/plain; version=0.0.4; charset=utf-8", `httplog_http_messages_total{type="CQ"} 3` + "\n", size},
		{"HEAD", "/metrics", 200, "text/plain; version=0.0.4; charset=utf-8", "", size},
		{"GET", "/healthz", 200, "text/plain; charset=utf-8", "ok\n", 3},
		{"POST", "/metrics", 405, "text/plain; charset=utf-8", "GET or HEAD\n", -1},
		{"GET", "/", 404, "text/plain; charset=utf-8", "not found", -1},
		{"GET", "/metrics/x", 404, "text/plain; charset=utf-8", "not found", -1},
	} {
		req, _ := http.NewRequest(tt.method, url+tt.path, strings.NewReader(""))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || resp.Header.Get("Content-Type") != tt.ctype || !strings.Contains(body.String(), tt.body) ||
			tt.method == "HEAD" && body.Len() > 0 || tt.length >= 0 && resp.ContentLength != int64(tt.length) {
			t.Errorf("%s %s: %d %q length %d\n%s", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.ContentLength, body.String())
		}
		if tt.code == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("405 without Allow: GET, HEAD")
		}
	}
	for _, line := range []string{"GET /metrics HTTP/2.0", "GET /metrics", "hello"} {
		if p := metricsPage(line, reg, metricsInfo{}); p.status != "400 Bad Request" {
			t.Errorf("%q: %s", line, p.status)
		}
	}
	if p := metricsPage("GET http://host:9731/metrics HTTP/1.1", reg, metricsInfo{}); p.status != "200 OK" || len(p.body) != size {
		t.Errorf("absolute form: %s", p.status)
	}
}

// TestMetricsStartErrors: an address that cannot be bound is a start
// error naming -metrics and the address, exit 1, for a start and for
// -check, before anything is captured or written.
func TestMetricsStartErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	seed := "testdata/seed.pcap"
	dir := t.TempDir()
	want := "httplog: -metrics " + addr + ": listen tcp " + addr + ": bind: address already in use\n"
	for _, args := range [][]string{
		{"-r", seed, "-d", dir, "-metrics", addr},
		{"-check", "-r", seed, "-d", dir, "-metrics", addr},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, envOf(nil), &out, &errOut); code != 1 || errOut.String() != want || out.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1, %q", args, code, out.String(), errOut.String(), want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 1 { // the lock file at most
		t.Errorf("files made before the start error: %v", ents)
	}
	// A free address passes -check, and the summary names it.
	free := "127.0.0.1:0"
	var out, errOut bytes.Buffer
	if code := run([]string{"-check", "-r", seed, "-d", dir, "-metrics", free}, envOf(nil), &out, &errOut); code != 0 || !strings.Contains(out.String(), ", metrics on "+free+", lines to ") {
		t.Errorf("-check with a free address: exit %d, %q %q", code, out.String(), errOut.String())
	}
}

// TestMetricsServerBounded: connections beyond maxScrapers are closed at
// once, a scrape still gets through while they are held, and stop ends
// every connection and returns.
func TestMetricsServerBounded(t *testing.T) {
	reg := &registry{}
	reg.newSet().add(cPackets, 11)
	m := serveTestMetrics(t, reg)
	addr := m.ln.Addr().String()
	// Silent clients hold every place but one.
	var held []net.Conn
	for range maxScrapers - 1 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(body.String(), "httplog_packets_total 11\n") {
		t.Errorf("scrape beside %d silent clients: %d\n%s", len(held), resp.StatusCode, body.String())
	}
	// Now one more fills the places; the next is closed unanswered.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	held = append(held, c)
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.Write([]byte("GET /healthz HTTP/1.1\r\n\r\n"))
	if n, err := extra.Read(make([]byte, 64)); err == nil {
		t.Errorf("connection beyond %d answered (%d bytes)", maxScrapers, n)
	}
	m.close() // returns only when the silent connections are closed
	for _, c := range held {
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("a connection was left open after stop")
		}
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Errorf("served after stop")
	}
}

// TestPairedResponsesObserved: with -pair, the real packet path puts each
// response the table pairs into the histograms once, with its request's
// method and its own status code; a copy of it, a 1xx interim response
// and an unpaired one are not counted; and a fresh exchange allocates
// nothing.
func TestPairedResponsesObserved(t *testing.T) {
	reg := &registry{pair: true}
	pp := newPacketPath(&localSet{all: true}, lineFormat{})
	pp.r.pair = true
	pp.p.pair = &pairWorker{table: newTestTable(64), set: &counterSet{}}
	pp.p.metrics = reg.newParserSet()
	c := newPairConn(t, nil, 40000, 1000, 5000)
	observed := func() map[string]uint64 {
		m := map[string]uint64{}
		for _, h := range reg.readDurations() {
			var n uint64
			for _, b := range h.buckets {
				n += b
			}
			m[fmt.Sprintf("%d %s %d", h.key.side, methodNames[h.key.method], 100+int(h.key.status))] = n
		}
		return m
	}
	pp.run(c.requestFrame(get("/")))
	resp := c.responseFrame(ok(10), 10)
	pp.run(resp)
	pp.run(resp) // a copy: a line with a time, not counted again
	pp.run(c.requestFrame("POST /f HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"))
	pp.run(c.responseFrame("HTTP/1.1 100 Continue\r\n\r\n", 0))
	pp.run(c.responseFrame("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", 0))
	pp.run(c.responseFrame("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0)) // answers nothing
	want := map[string]uint64{"0 GET 200": 1, "0 POST 503": 1}
	if got := observed(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("observed %v, want %v (copies, interim and unpaired not counted)", got, want)
	}

	var frames [][]byte
	for i := range 202 {
		frames = append(frames, c.requestFrame(get("/"+strconv.Itoa(i))), c.responseFrame(ok(1), 1))
	}
	next := 0
	if a := testing.AllocsPerRun(200, func() {
		pp.run(frames[next])
		pp.run(frames[next+1])
		next += 2
	}); a != 0 {
		t.Errorf("%.1f allocations per paired exchange, want 0", a)
	}
	if got := observed()["0 GET 200"]; got != 1+201 {
		t.Errorf("GET 200 observed %d times, want %d", got, 1+201)
	}
}
