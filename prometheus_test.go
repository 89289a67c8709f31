package main

// /metrics of the real binary: the counters against the statistics line
// at exit, scrapes during a 100 k packets/s replay, a real Prometheus
// scraping httplog during nginx/wrk traffic, and the alert rules of
// dist/ checked and unit-tested by promtool (Debian's prometheus package).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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

// promQuery runs an instant query through Prometheus' HTTP API and
// returns the result's samples: labels and value.
func promQuery(c *http.Client, api, query string) ([]promSample, error) {
	body, err := httpGet(c, api+"/api/v1/query?query="+url.QueryEscape(query))
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		return nil, fmt.Errorf("query %s: %v: %s", query, err, body)
	}
	var out []promSample
	for _, s := range r.Data.Result {
		v, _ := s.Value[1].(string)
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %q", query, v)
		}
		out = append(out, promSample{s.Metric, f})
	}
	return out, nil
}

type promSample struct {
	labels map[string]string
	value  float64
}

// startPrometheus runs Debian's Prometheus in namespace ns, listening on
// listen, scraping target every second as job httplog, with the rules of
// dist/; it returns the base URL of its API once it has scraped target
// (it takes up new targets every 5 s). Its configuration and data are in
// the test's temporary directory; the topology stops it by PID.
func startPrometheus(t *testing.T, tp *topology, ns, listen, target string) string {
	t.Helper()
	prometheus := tool(t, "prometheus")
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	writeFile(t, conf, fmt.Sprintf(`# written by prometheus_test.go
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: httplog
    static_configs:
      - targets: [%q]
`, rulesFile(t), target), 0o644)
	p := tp.start(t, "prometheus", ns, prometheus, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	api := "http://" + listen
	c := nsClient(ns)
	if !waitFor(30*time.Second, func() bool {
		up, err := promQuery(c, api, `up{job="httplog"}`)
		return err == nil && len(up) == 1 || p.exited()
	}) || p.exited() {
		t.Fatalf("prometheus did not scrape %s (exited: %v, %v):\n%s", target, p.exited(), p.err, p.stderr.String())
	}
	return api
}

// rulesFile is the alert rules file the README offers.
func rulesFile(t *testing.T) string {
	name, err := filepath.Abs(filepath.Join("dist", "httplog.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// TestPrometheusScrapes: a real Prometheus scrapes httplog every second
// while wrk loads nginx; once traffic has stopped and Prometheus has
// scraped again, its httplog_http_messages_total{type="CQ"} is the CQ of
// httplog's final statistics line, and the rules file loads into it.
func TestPrometheusScrapes(t *testing.T) {
	tp := newTopology(t)
	wrk := tool(t, "wrk")
	ng := tp.startNginx(tp.srvNS)
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-metrics", "127.0.0.1:9731")
	api := startPrometheus(t, tp, tp.srvNS, "127.0.0.1:9090", "127.0.0.1:9731")
	c := nsClient(tp.srvNS)

	script := filepath.Join(t.TempDir(), "pace.lua")
	writeFile(t, script, "-- a pause between the requests of a connection, in ms\nfunction delay()\n\treturn 2\nend\n", 0o644)
	w := tp.start(t, "wrk", tp.cliNS, wrk, "-t1", "-c4", "-d4s", "-s", script, httpURL(tp.srv4, 80, "/small"))
	if !w.wait(30*time.Second) || w.err != nil {
		t.Fatalf("wrk: %v\n%s%s", w.err, w.stdout.String(), w.stderr.String())
	}
	// One more request after wrk: once its lines are in the file, every
	// line before it has been counted (one parser keeps capture order).
	x := tp.curl(t, tp.cliNS, curlRequest{method: "GET", url: httpURL(tp.srv4, 80, "/hello.txt")})
	if !waitFor(20*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, todayFile()))
		return strings.Contains(string(b), x.requestText("CQ")) && strings.Contains(string(b), x.responseText("CR"))
	}) {
		t.Fatalf("the last request's lines never reached the file")
	}
	final := time.Now()
	// Prometheus' sample taken after that is the final count.
	var cq []promSample
	if !waitFor(20*time.Second, func() bool {
		ts, err := promQuery(c, api, `timestamp(httplog_http_messages_total{type="CQ"})`)
		if err != nil || len(ts) != 1 || ts[0].value*1e3 < float64(final.UnixMilli()) {
			return false
		}
		cq, err = promQuery(c, api, `httplog_http_messages_total{type="CQ"}`)
		return err == nil
	}) {
		t.Fatalf("Prometheus has no sample of httplog after traffic stopped")
	}
	ups, err := promQuery(c, api, `count_over_time(up{job="httplog"}[1m])`)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := httpGet(c, api+"/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	// The dashboard's queries of the README run; those that do not need
	// -pair have data.
	queries := readmeQueries(t)
	for _, q := range queries {
		r, err := promQuery(c, api, q)
		if err != nil || len(r) == 0 && !strings.Contains(q, "duration_seconds") {
			t.Errorf("README's query %s: %v, %v", q, r, err)
		}
	}
	if len(queries) < 5 {
		t.Errorf("%d queries in README's promql block", len(queries))
	}
	stderr := stopHttplog(t, d)
	ng.stop(t)
	stats := parseStats(t, stderr)
	t.Logf("Prometheus: %d scrapes of httplog in the last minute; CQ %v; statistics line: %s", int(ups[0].value), cq, lastStatsLine(stderr))
	if len(cq) != 1 || cq[0].value != float64(stats["CQ"]) || stats["CQ"] < 1000 {
		t.Errorf("Prometheus has httplog_http_messages_total{type=\"CQ\"} %v, the statistics line CQ=%d (want equal, and load)", cq, stats["CQ"])
	}
	if len(ups) != 1 || ups[0].value < 4 {
		t.Errorf("Prometheus scraped httplog %v times in the last minute, want one a second of the 4 s of load and more", ups)
	}
	for _, alert := range []string{"HttplogKernelDrops", "HttplogNoPackets", "Httplog5xxRatio"} {
		if !strings.Contains(string(rules), `"name":"`+alert+`"`) {
			t.Errorf("Prometheus did not load the alert %s:\n%s", alert, rules)
		}
	}
}

// TestPrometheusResponseTimes: with -pair, the pairing tests' delay
// server answering every request after 150 ms, loaded by wrk, gives
// response time histograms whose p50 and p99, computed by Prometheus'
// histogram_quantile from its scrapes, land in OpenTelemetry's bucket
// (0.1 s, 0.25 s], for the method and status code of the requests.
func TestPrometheusResponseTimes(t *testing.T) {
	tp := newTopology(t)
	wrk := tool(t, "wrk")
	pairDelayServer(t, tp)
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, newLogDir(t), "-pair", "-metrics", "127.0.0.1:9731")
	api := startPrometheus(t, tp, tp.srvNS, "127.0.0.1:9090", "127.0.0.1:9731")
	c := nsClient(tp.srvNS)

	w := tp.start(t, "wrk", tp.cliNS, wrk, "-t1", "-c16", "-d4s", httpURL(tp.srv4, 80, "/delay?ms=150"))
	if !w.wait(30*time.Second) || w.err != nil {
		t.Fatalf("wrk: %v\n%s%s", w.err, w.stdout.String(), w.stderr.String())
	}
	// Prometheus has scraped the responses of the load.
	const count = `sum(http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200"})`
	var n []promSample
	if !waitFor(30*time.Second, func() bool {
		var err error
		n, err = promQuery(c, api, count)
		return err == nil && len(n) == 1 && n[0].value >= 100
	}) {
		t.Fatalf("Prometheus has %v responses timed, want 100 or more:\n%s", n, lastStatsLine(d.stderr.String()))
	}
	for _, q := range []float64{0.5, 0.99} {
		r, err := promQuery(c, api, fmt.Sprintf(`histogram_quantile(%v, sum by (le) (http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200"}))`, q))
		if err != nil || len(r) != 1 || r[0].value <= 0.1 || r[0].value > 0.25 {
			t.Errorf("p%v of %v responses: %v, %v; want in (0.1, 0.25]", q*100, n[0].value, r, err)
		} else {
			t.Logf("p%v of %v responses: %.3f s", q*100, n[0].value, r[0].value)
		}
	}
	if r, err := promQuery(c, api, `http_client_request_duration_seconds_count`); err != nil || len(r) != 0 {
		t.Errorf("client histogram: %v, %v; want no series (no SQ/SR traffic)", r, err)
	}
	stderr := stopHttplog(t, d)
	if stats := parseStats(t, stderr); stats["paired"] < uint64(n[0].value) {
		t.Errorf("%v responses timed, but paired=%d", n[0].value, stats["paired"])
	}
}

// readmeQueries are the PromQL queries of README.md's promql block, one
// a line, comments left out.
func readmeQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(b), "```promql\n")
	block, _, _ = strings.Cut(block, "```")
	var qs []string
	for _, l := range strings.Split(block, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			qs = append(qs, l)
		}
	}
	return qs
}

// TestAlertRules: promtool accepts the rules file, and its unit tests
// (written here) show each alert firing when it should and not before:
// kernel drops rising, no packets for 5 minutes, 5xx above 5 % of a
// type's responses. promtool also lints an exposition with every family.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool")
	rules := rulesFile(t)
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests := filepath.Join(t.TempDir(), "rules_test.yml")
	writeFile(t, tests, fmt.Sprintf(`# written by prometheus_test.go
rule_files:
  - %q
evaluation_interval: 1m
tests:
  # 40 drops at minutes 11 and 12: the alert fires at once, and ends 5
  # minutes after the last.
  - interval: 1m
    input_series:
      - series: 'httplog_kernel_drops_total{instance="h:9731",job="httplog"}'
        values: '0x10 5 40 40x10'
    alert_rule_test:
      - eval_time: 10m
        alertname: HttplogKernelDrops
        exp_alerts: []
      - eval_time: 14m
        alertname: HttplogKernelDrops
        exp_alerts:
          - exp_labels: {severity: warning, instance: "h:9731", job: httplog}
            exp_annotations:
              summary: "httplog on h:9731 dropped frames: its ring overflowed"
              description: "The kernel dropped 40 frames in 5 minutes because httplog's ring was full. Raise -b (ring) and -cpu, check the disk (README: Troubleshooting)."
      - eval_time: 18m
        alertname: HttplogKernelDrops
        exp_alerts: []
  # Packets until minute 5, then none: the alert fires 5 minutes later.
  - interval: 1m
    input_series:
      - series: 'httplog_packets_total{instance="h:9731",job="httplog"}'
        values: '0+100x5 500x15'
    alert_rule_test:
      - eval_time: 9m
        alertname: HttplogNoPackets
        exp_alerts: []
      - eval_time: 12m
        alertname: HttplogNoPackets
        exp_alerts:
          - exp_labels: {severity: warning, instance: "h:9731", job: httplog}
            exp_annotations:
              summary: "httplog on h:9731 has read no packet for 5 minutes"
              description: "No frame reached httplog's ring for 5 minutes: is the interface (-i) and the port list (-p) right, and is there traffic?"
  # 1 of 10 responses of local servers is a 5xx from minute 5 on, 1 of
  # 100 of remote ones: the alert fires for CR only, after 5 minutes.
  - interval: 1m
    input_series:
      - series: 'httplog_http_responses_total{instance="h:9731",job="httplog",type="CR",class="2xx"}'
        values: '0+90x30'
      - series: 'httplog_http_responses_total{instance="h:9731",job="httplog",type="CR",class="5xx"}'
        values: '0x5 0+10x25'
      - series: 'httplog_http_responses_total{instance="h:9731",job="httplog",type="SR",class="2xx"}'
        values: '0+99x30'
      - series: 'httplog_http_responses_total{instance="h:9731",job="httplog",type="SR",class="5xx"}'
        values: '0+1x30'
    alert_rule_test:
      - eval_time: 8m
        alertname: Httplog5xxRatio
        exp_alerts: []
      - eval_time: 20m
        alertname: Httplog5xxRatio
        exp_alerts:
          - exp_labels: {severity: warning, instance: "h:9731", job: httplog, type: CR}
            exp_annotations:
              summary: "10%% of the CR responses seen by httplog on h:9731 are 5xx"
              description: "In the last 5 minutes 10%% of the responses of type CR (CR: of local servers, SR: of remote ones) had a status 500-599."
`, rules), 0o644)
	if out, err := exec.Command(promtool, "test", "rules", tests).CombinedOutput(); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}

	// Every family, the histograms too, passes promtool's lint.
	reg := &registry{pair: true}
	reg.newSet().add(cPackets, 1)
	reg.newParserSet().durations.observe(typeCR, methodGET, 200, 1e6)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(appendMetrics(nil, reg, metricsInfo{})))
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
