package main

// /metrics of the real binary: the counters against the statistics line
// at exit, scrapes during a 100 k packets/s replay, a real Prometheus
// scraping httplog during nginx/wrk traffic, and the alert rules of
// dist/ checked and unit-tested by promtool (Debian's prometheus package).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	dto "github.com/prometheus/client_model/go"
)

// metricsURLRE finds the address httplog serves /metrics on in its start
// message.
var metricsURLRE = regexp.MustCompile(`metrics on (http://\S+/metrics)`)

// metricsURL waits for the start message of a daemon writing to stderr and
// returns the URL of its /metrics.
func metricsURL(t *testing.T, stderr *syncBuffer) string {
	t.Helper()
	var m []string
	if !waitFor(10*time.Second, func() bool {
		m = metricsURLRE.FindStringSubmatch(stderr.String())
		return m != nil
	}) {
		t.Fatalf("no \"metrics on\" in the start message:\n%s", stderr.String())
	}
	return m[1]
}

// nsClient is an HTTP client whose connections are made in network
// namespace ns ("" for the test's own).
func nsClient(ns string) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	if ns != "" {
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetns(ns, func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// httpGet returns the body of a GET that must answer 200.
func httpGet(c *http.Client, url string) ([]byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return body, err
}

// scrape reads /metrics once, parsed by Prometheus' text parser.
func scrape(t *testing.T, c *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	body, err := httpGet(c, url)
	if err != nil {
		t.Fatal(err)
	}
	return parseExposition(t, body)
}

// statsCounter is the series of /metrics that holds the statistics line's
// counter def: httplog_NAME_total, or the type's series of
// httplog_http_messages_total.
func statsCounter(fams map[string]*dto.MetricFamily, id int) (float64, bool) {
	def := counterDefs[id]
	if counterID(id) >= cCQ && counterID(id) <= cSR {
		return counterValue(fams, "httplog_http_messages_total", "type", def.name)
	}
	return counterValue(fams, "httplog_"+def.name+"_total")
}

// checkScrapeIsStats checks that every counter of a scrape equals the
// statistics line's, and that a scrape has the pairing counters just when
// the line has.
func checkScrapeIsStats(t *testing.T, fams map[string]*dto.MetricFamily, stats map[string]uint64) {
	t.Helper()
	for id, def := range counterDefs {
		got, ok := statsCounter(fams, id)
		if _, inLine := stats[def.name]; !inLine {
			if ok {
				t.Errorf("/metrics has %s, the statistics line has not", def.name)
			}
			continue
		}
		if !ok || got != float64(stats[def.name]) {
			t.Errorf("/metrics: %s = %v (present: %v), the statistics line at exit: %d", def.name, got, ok, stats[def.name])
		}
	}
}

// TestMetricsEqualStatistics: with traffic stopped, /metrics holds the
// numbers of the final statistics line, counter by counter; the parsers'
// counts by method and class add up to the lines by type.
// It is long because it sends every kind of packet and compares every counter.
func TestMetricsEqualStatistics(t *testing.T) {
	dir := t.TempDir()
	d := startPiped(t, "-d", dir, "-metrics", "127.0.0.1:0", "-local", "198.51.100.2", "-cpu", "2")
	url := metricsURL(t, &d.stderr)
	frames := [][]byte{
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),          // CQ GET
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40001, 80, "POST /f HTTP/1.1\r\nHost: a\r\n\r\n"),        // CQ POST
		ipv4HTTP("198.51.100.2", "192.0.2.1", 80, 40000, "HTTP/1.1 200 OK\r\n\r\n"),                    // CR 2xx
		ipv4HTTP("198.51.100.2", "192.0.2.1", 80, 40001, "HTTP/1.1 503 Busy\r\n\r\n"),                  // CR 5xx
		ipv4HTTP("198.51.100.2", "203.0.113.9", 40002, 80, "DELETE /x HTTP/1.1\r\n\r\n"),               // SQ DELETE
		ipv4HTTP("203.0.113.9", "198.51.100.2", 80, 40002, "HTTP/1.1 404 Not Found\r\n\r\n"),           // SR 4xx
		ipv4HTTP("203.0.113.9", "198.51.100.2", 80, 40003, "HTTP/1.1 9 Odd\r\n\r\n"),                   // SR other
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, ""),                                           // not_http
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 8080, "GET / HTTP/1.1\r\n\r\n"),                   // not_http: port
		ether(etherIPv4, nil, ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0x2000|185, []byte("x"))), // fragments
		ether(etherIPv4, nil, []byte{0x45, 0, 0}),                                                      // malformed
	}
	const rounds = 300 // more than one batch, and than a reader's publishEvery
	httpFrames := 0
	for i := range rounds {
		for j, fr := range frames {
			if j < 7 {
				httpFrames++
			}
			if err := d.pcap.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1567315011, int64(i)), CaptureLength: len(fr), Length: len(fr) + 4}, fr); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := nsClient("")
	var fams map[string]*dto.MetricFamily
	if !waitFor(20*time.Second, func() bool {
		fams = scrape(t, c, url)
		var lines float64
		for _, m := range fams["httplog_http_messages_total"].GetMetric() {
			lines += m.GetCounter().GetValue()
		}
		packets, _ := counterValue(fams, "httplog_packets_total")
		return packets == float64(rounds*len(frames)) && lines == float64(httpFrames)
	}) {
		t.Fatalf("/metrics never showed every packet and line read:\n%s", d.stderr.String())
	}
	stderr := d.finish(t)
	stats := parseStats(t, stderr)
	checkScrapeIsStats(t, fams, stats)
	if stats["packets"] != rounds*uint64(len(frames)) || stats["fragments"] != rounds || stats["malformed"] != rounds || stats["SR"] != 2*rounds {
		t.Errorf("statistics line: %s", lastStatsLine(stderr))
	}
	for _, w := range []struct {
		name   string
		labels []string
		want   int
	}{
		{"httplog_http_requests_total", []string{"type", "CQ", "method", "GET"}, rounds},
		{"httplog_http_requests_total", []string{"type", "CQ", "method", "POST"}, rounds},
		{"httplog_http_requests_total", []string{"type", "SQ", "method", "DELETE"}, rounds},
		{"httplog_http_responses_total", []string{"type", "CR", "class", "2xx"}, rounds},
		{"httplog_http_responses_total", []string{"type", "CR", "class", "5xx"}, rounds},
		{"httplog_http_responses_total", []string{"type", "SR", "class", "4xx"}, rounds},
		{"httplog_http_responses_total", []string{"type", "SR", "class", "other"}, rounds},
		{"httplog_parsers", nil, 2},
		{"httplog_readers", nil, 1},
		{"httplog_ring_bytes", nil, 0},
	} {
		if got, ok := counterValue(fams, w.name, w.labels...); !ok || got != float64(w.want) {
			t.Errorf("%s%q = %v (present: %v), want %d", w.name, w.labels, got, ok, w.want)
		}
	}
}

// TestMetricsScrapedDuringReplay: frames replayed at 100 k packets/s into
// a veth, read by two readers, while /metrics is scraped every 10 ms:
// every frame is read and counted as what it is, none is dropped, the
// scrapes see the counts only grow, and once the last line is written
// /metrics has every line and every response's class, summed over the
// readers and the parsers.
// It is long because it is one replay with scrapes, then every count checked.
func TestMetricsScrapedDuringReplay(t *testing.T) {
	tp := newTopology(t)
	tcpreplay := tool(t, "tcpreplay")
	// Exchanges between documentation addresses, for a MAC that is not the
	// veth's: the server's kernel drops them unanswered, httplog sees them.
	// The last frame is a request to a remote server, the only SQ line.
	const exchanges = 50000
	var frames [][]byte
	var size uint64
	classes := map[string]int{}
	add := func(fr []byte) {
		frames = append(frames, fr)
		size += uint64(len(fr))
	}
	for i := range exchanges {
		port := uint16(1024 + i%60000)
		code := []string{"200", "200", "200", "304", "404", "503"}[i%6]
		classes[code[:1]+"xx"]++
		add(ipv4HTTP("192.0.2.1", "198.51.100.2", port, 80, fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i)))
		add(ipv4HTTP("198.51.100.2", "192.0.2.1", 80, port, "HTTP/1.1 "+code+" X\r\nContent-Length: 0\r\n\r\n"))
		add(ipv4HTTP("192.0.2.1", "198.51.100.2", port, 80, "")) // an ACK
	}
	add(ipv4HTTP("198.51.100.2", "203.0.113.9", 1023, 80, "GET /end HTTP/1.1\r\n\r\n"))
	pcap := writePcap(t, layers.LinkTypeEthernet, frames, time.Now())
	dir := newLogDir(t)
	// A 64 MB ring holds the whole replay: what is tested is that scraping
	// loses and changes nothing, not how fast httplog built with -race is.
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-local", "198.51.100.2", "-metrics", "127.0.0.1:9731", "-b", "64", "-readers", "2", "-cpu", "2")
	url := metricsURL(t, &d.stderr)
	c := nsClient(tp.srvNS)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var scrapes, failed int
	var slowest time.Duration
	var regress []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		last := -1.0
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			start := time.Now()
			body, err := httpGet(c, url)
			slowest = max(slowest, time.Since(start))
			if err != nil {
				failed++
				continue
			}
			scrapes++
			p := expfmtPackets(body)
			if p < last {
				regress = append(regress, fmt.Sprintf("%v after %v", p, last))
			}
			last = p
		}
	}()
	start := time.Now()
	out, err := tp.exec(tp.cliNS, tcpreplay, "-i", tp.cliIf, "--pps=100000", pcap)
	took := time.Since(start)
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("tcpreplay: %v\n%s", err, out)
	}
	// Every line written: each parser published its counts before it
	// handed its lines on.
	var fams map[string]*dto.MetricFamily
	done := waitFor(30*time.Second, func() bool {
		fams = scrape(t, c, url)
		cq, _ := counterValue(fams, "httplog_http_messages_total", "type", "CQ")
		cr, _ := counterValue(fams, "httplog_http_messages_total", "type", "CR")
		sq, _ := counterValue(fams, "httplog_http_messages_total", "type", "SQ")
		return cq == exchanges && cr == exchanges && sq == 1
	})
	close(stop)
	wg.Wait()
	stderr := stopHttplog(t, d)
	stats := parseStats(t, stderr)
	t.Logf("replayed %d frames in %v (%.0f packets/s); %d scrapes meanwhile (%d failed), the slowest took %v",
		len(frames), took.Round(time.Millisecond), float64(len(frames))/took.Seconds(), scrapes, failed, slowest.Round(time.Millisecond))
	if !done {
		t.Fatalf("the lines of the replay never all reached /metrics: %s\ntcpreplay:\n%s", lastStatsLine(stderr), out)
	}
	if scrapes < 50 || failed > 0 || len(regress) > 0 {
		t.Errorf("%d scrapes during the replay, %d failed; packets going back: %v", scrapes, failed, regress)
	}
	// Besides the frames sent, the new interfaces' own IPv6 multicast
	// listener reports may come by (the kernel filter hands IPv6 with a
	// hop-by-hop header to user space): a few, not HTTP, nothing else.
	extra := stats["packets"] - uint64(len(frames))
	want := map[string]uint64{"CQ": exchanges, "CR": exchanges, "SQ": 1, "SR": 0, "not_http": exchanges + extra,
		"kernel_drops": 0, "malformed": 0, "lines_lost": 0}
	for k, v := range want {
		if stats[k] != v {
			t.Errorf("%s=%d, want %d: %s", k, stats[k], v, lastStatsLine(stderr))
		}
	}
	if stats["packets"] < uint64(len(frames)) || extra > 16 || stats["bytes"] < size {
		t.Errorf("%d frames sent (%d bytes): %s", len(frames), size, lastStatsLine(stderr))
	}
	for class, n := range classes {
		if got, _ := counterValue(fams, "httplog_http_responses_total", "type", "CR", "class", class); got != float64(n) {
			t.Errorf("responses of class %s: %v, want %d", class, got, n)
		}
	}
	if got, _ := counterValue(fams, "httplog_http_requests_total", "type", "CQ", "method", "GET"); got != exchanges {
		t.Errorf("GET requests: %v, want %d", got, exchanges)
	}
	// Two readers, whose rings share -b 64.
	readers, _ := counterValue(fams, "httplog_readers")
	ring, _ := counterValue(fams, "httplog_ring_bytes")
	if readers != 2 || ring > 64<<20 || ring < 60<<20 {
		t.Errorf("httplog_readers %v, httplog_ring_bytes %v: want 2 readers and their rings of 64 MB together", readers, ring)
	}
}

// expfmtPackets is httplog_packets_total in an exposition, or -1.
func expfmtPackets(body []byte) float64 {
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "httplog_packets_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
