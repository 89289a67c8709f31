package main

// -metrics: the registry of counters.go in Prometheus' text format, served
// on /metrics with /healthz by a small HTTP server of its own.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The exposition: the registry in Prometheus' text format, version 0.0.4
// (what every Prometheus, VictoriaMetrics, Grafana Agent and
// OpenTelemetry collector reads). Written by hand (docs/DESIGN.md says
// why): a family is "# HELP", "# TYPE" and its samples; label values and
// help texts are escaped as the format says.

// metricsInfo is the state of the run that /metrics shows beside the
// counters; it does not change while httplog runs.
type metricsInfo struct {
	ringBytes int // of the kernel rings; 0 reading a file
	readers   int
	parsers   int
}

// The families that are not a counter of the statistics line.
const (
	messagesHelp  = "HTTP start lines made, by type (CQ, CR, SQ, SR), written or lost: the statistics line's CQ, CR, SQ and SR"
	requestsHelp  = "HTTP requests seen, by type (CQ: to a local server, SQ: to a remote one) and method"
	responsesHelp = "HTTP responses seen, by type (CR: of a local server, SR: of a remote one) and status class (other: no status code from 100 to 599)"
	serverHelp    = "Time from a request to a local server to its response, as captured (CQ to CR; -pair)"
	clientHelp    = "Time from a request to a remote server to its response, as captured (SQ to SR; -pair)"
)

var histogramNames = [2]string{"http_server_request_duration_seconds", "http_client_request_duration_seconds"}

// bucketLabels are the le labels of the buckets, in seconds.
var bucketLabels = func() (l [numBuckets]string) {
	for i, ns := range durationBounds {
		l[i] = strconv.FormatFloat(float64(ns)/1e9, 'g', -1, 64)
	}
	l[len(durationBounds)] = "+Inf"
	return l
}()

// appendMetrics appends the exposition of everything reg counts and of
// info. It reads atomics only.  It is long because it is the list of the
// families, in the order /metrics shows them.
func appendMetrics(b []byte, reg *registry, info metricsInfo) []byte {
	v := reg.read()
	for id, def := range counterDefs {
		switch counterID(id) {
		case cCQ:
			name := "httplog_http_messages_total"
			b = appendHeader(b, name, messagesHelp, "counter")
			for t := range numTypes {
				b = appendUint(appendSeries(b, name, "type", t.String()), v[lineCounter(t)])
			}
		case cCR, cSQ, cSR: // in the family of cCQ
		default:
			if isPairCounter(counterID(id)) && !reg.pair {
				continue // as in the statistics line
			}
			name := "httplog_" + def.name + "_total"
			b = appendHeader(b, name, def.help, "counter")
			b = appendUint(appendSeries(b, name), v[id])
		}
	}

	var counts parserCounts
	for _, s := range loadSets(&reg.parsers) {
		for t := range counts.requests {
			for m := range counts.requests[t] {
				counts.requests[t][m] += s.requests[t][m].Load()
			}
			for c := range counts.responses[t] {
				counts.responses[t][c] += s.responses[t][c].Load()
			}
		}
	}
	name := "httplog_http_requests_total"
	b = appendHeader(b, name, requestsHelp, "counter")
	for _, t := range []lineType{typeCQ, typeSQ} {
		for m, n := range counts.requests[t] {
			if uint8(m) != methodOther || n > 0 { // requests come with one of the nine
				b = appendUint(appendSeries(b, name, "type", t.String(), "method", methodNames[m]), n)
			}
		}
	}
	name = "httplog_http_responses_total"
	b = appendHeader(b, name, responsesHelp, "counter")
	for _, t := range []lineType{typeCR, typeSR} {
		for c, n := range counts.responses[t] {
			b = appendUint(appendSeries(b, name, "type", t.String(), "class", classNames[c]), n)
		}
	}

	for _, g := range []struct {
		name, help string
		v          int
	}{
		{"httplog_ring_bytes", "Size of the kernel capture rings in bytes (0 reading a file)", info.ringBytes},
		{"httplog_readers", "Reader goroutines, one per packet source (-readers)", info.readers},
		{"httplog_parsers", "Parser goroutines (-cpu)", info.parsers},
		{"httplog_processors", "Processors running httplog's goroutines now (GOMAXPROCS): with -procs auto, a live capture's follow the load", runtime.GOMAXPROCS(0)},
	} {
		b = appendHeader(b, g.name, g.help, "gauge")
		b = appendUint(appendSeries(b, g.name), uint64(g.v))
	}
	name = "httplog_build_info"
	b = appendHeader(b, name, "The version of httplog and of the Go it was built with", "gauge")
	b = appendUint(appendSeries(b, name, "version", version, "goversion", runtime.Version()), 1)

	if reg.pair {
		b = appendDurations(b, reg.readDurations())
	}
	return b
}

// appendDurations appends the two histogram families; series are sorted
// by side.
func appendDurations(b []byte, series []histValues) []byte {
	for side, name := range histogramNames {
		b = appendHeader(b, name, [2]string{serverHelp, clientHelp}[side], "histogram")
		for _, h := range series {
			if int(h.key.side) != side {
				continue
			}
			status := "_OTHER"
			if h.key.status != statusOther {
				status = strconv.Itoa(100 + int(h.key.status))
			}
			method := methodNames[h.key.method]
			var count uint64
			for i, n := range h.buckets {
				count += n
				b = appendSeries(b, name+"_bucket", "http_request_method", method, "http_response_status_code", status, "le", bucketLabels[i])
				b = appendUint(b, count)
			}
			b = appendSeries(b, name+"_sum", "http_request_method", method, "http_response_status_code", status)
			b = append(strconv.AppendFloat(b, float64(h.sum)/1e9, 'g', -1, 64), '\n')
			b = appendUint(appendSeries(b, name+"_count", "http_request_method", method, "http_response_status_code", status), count)
		}
	}
	return b
}

// appendHeader appends the HELP and TYPE lines of a family. In help, a
// backslash is written \\ and a line break \n.
func appendHeader(b []byte, name, help, typ string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = appendEscapedText(b, help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

// appendSeries appends a sample's name and labels, given as name and value
// pairs, and the space before its value.
func appendSeries(b []byte, name string, labels ...string) []byte {
	b = append(b, name...)
	for i := 0; i+1 < len(labels); i += 2 {
		if i == 0 {
			b = append(b, '{')
		} else {
			b = append(b, ',')
		}
		b = append(b, labels[i]...)
		b = append(b, '=', '"')
		b = appendEscapedText(b, labels[i+1], true)
		b = append(b, '"')
	}
	if len(labels) > 0 {
		b = append(b, '}')
	}
	return append(b, ' ')
}

func appendUint(b []byte, v uint64) []byte {
	return append(strconv.AppendUint(b, v, 10), '\n')
}

// appendEscapedText escapes s as the text format wants: a backslash as
// \\, a line break as \n, and in a label value (quoted) a double quote
// as \".
func appendEscapedText(b []byte, s string, quoted bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '"' && quoted:
			b = append(b, '\\', '"')
		default:
			b = append(b, c)
		}
	}
	return b
}

// The HTTP server of -metrics: two read-only pages, one answer per
// connection. It is written here rather than taken from net/http, which
// would double the size of the binary (docs/DESIGN.md): a request is its
// head (at most maxRequestHead bytes, read within scrapeTimeout), the
// answer has a Content-Length and closes the connection, and at most
// maxScrapers connections are open at once; more are closed at once.

const (
	maxRequestHead = 8 << 10 // a scraper's request line and headers take a few hundred bytes
	scrapeTimeout  = 10 * time.Second
	maxScrapers    = 16 // Prometheus scrapes over one connection at a time; a few more for people
)

// metricsServer is the HTTP server of -metrics. A nil one (no -metrics)
// does nothing.
type metricsServer struct {
	ln   net.Listener
	stop func() // set by serve
}

// listenMetrics binds the address of -metrics; nil for "". The error
// names the flag and the address.
func listenMetrics(addr string) (*metricsServer, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics %s: %v", addr, err)
	}
	return &metricsServer{ln: ln}, nil
}

// describe is the start message's part for -metrics: where it serves.
func (m *metricsServer) describe() string {
	if m == nil {
		return ""
	}
	return fmt.Sprintf(", metrics on http://%s/metrics", m.ln.Addr())
}

// close stops serving, or closes the listener if serve was not called.
func (m *metricsServer) close() {
	switch {
	case m == nil:
	case m.stop != nil:
		m.stop()
	default:
		m.ln.Close()
	}
}

// serve answers on goroutines of its own until close.
func (m *metricsServer) serve(reg *registry, info metricsInfo, logger *log.Logger) {
	if m != nil {
		m.stop = serveMetrics(m.ln, reg, info, logger)
	}
}

// page is an answer: status code and reason, content type, body.
type page struct {
	status string // "200 OK"
	ctype  string
	body   []byte
	allow  bool // 405: name the methods allowed
}

// metricsPage answers the request line of a request: GET or HEAD of
// /metrics (the exposition) or /healthz ("ok"); 404 for another path, 405
// for another method, 400 for a line that is not an HTTP/1 request.
func metricsPage(line string, reg *registry, info metricsInfo) page {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !strings.HasPrefix(proto, "HTTP/1.") || target == "" {
		return page{status: "400 Bad Request", ctype: "text/plain; charset=utf-8", body: []byte("bad request\n")}
	}
	if scheme, after, ok := strings.Cut(target, "://"); ok && !strings.Contains(scheme, "/") {
		target = "/" // absolute form (RFC 9112 section 3.2.2): the path after the host
		if i := strings.IndexByte(after, '/'); i >= 0 {
			target = after[i:]
		}
	}
	target, _, _ = strings.Cut(target, "?")
	var p page
	switch target {
	case "/metrics":
		p = page{status: "200 OK", ctype: "text/plain; version=0.0.4; charset=utf-8"}
		if method == "GET" || method == "HEAD" {
			p.body = appendMetrics(make([]byte, 0, 16<<10), reg, info)
		}
	case "/healthz":
		p = page{status: "200 OK", ctype: "text/plain; charset=utf-8", body: []byte("ok\n")}
	default:
		return page{status: "404 Not Found", ctype: "text/plain; charset=utf-8", body: []byte("not found: /metrics or /healthz\n")}
	}
	if method != "GET" && method != "HEAD" {
		return page{status: "405 Method Not Allowed", ctype: "text/plain; charset=utf-8", body: []byte("GET or HEAD\n"), allow: true}
	}
	return p
}

// serveMetrics answers connections to ln on goroutines of its own until
// stop is called; stop closes the listener and every open connection, and
// returns when all of them have ended.
func serveMetrics(ln net.Listener, reg *registry, info metricsInfo, logger *log.Logger) (stop func()) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				// Out of descriptors or memory: wait for some to be freed,
				// instead of spinning (net/http does the same).
				logger.Printf("-metrics %s: %v", ln.Addr(), err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			mu.Lock()
			if len(conns) >= maxScrapers {
				mu.Unlock()
				c.Close()
				continue
			}
			conns[c] = true
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				answer(c, reg, info)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	return func() {
		ln.Close()
		<-accepted
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// answer reads the head of one request from c, writes the answer, and
// closes c.
func answer(c net.Conn, reg *registry, info metricsInfo) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(scrapeTimeout))
	r := bufio.NewReaderSize(io.LimitReader(c, maxRequestHead), 1024)
	line, err := r.ReadString('\n')
	if err != nil {
		return // closed, too long or too slow: nobody to answer
	}
	// The whole head is read before answering: closing a socket with
	// unread bytes makes the kernel reset the connection, which can lose
	// the answer.
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if h == "\r\n" || h == "\n" {
			break
		}
	}
	p := metricsPage(strings.TrimRight(line, "\r\n"), reg, info)
	head := make([]byte, 0, 256)
	head = append(head, "HTTP/1.1 "...)
	head = append(head, p.status...)
	head = append(head, "\r\nDate: "...)
	head = time.Now().UTC().AppendFormat(head, "Mon, 02 Jan 2006 15:04:05 GMT")
	head = append(head, "\r\nContent-Type: "...)
	head = append(head, p.ctype...)
	head = append(head, "\r\nContent-Length: "...)
	head = strconv.AppendInt(head, int64(len(p.body)), 10)
	if p.allow {
		head = append(head, "\r\nAllow: GET, HEAD"...)
	}
	head = append(head, "\r\nConnection: close\r\n\r\n"...)
	if !strings.HasPrefix(line, "HEAD ") {
		head = append(head, p.body...)
	}
	c.Write(head)
}
