package main

// A real Prometheus (Debian's prometheus package) scraping httplog's
// /metrics during nginx/wrk traffic, and the alert rules of dist/ checked
// and unit-tested by promtool; prometheus_test.go has the scrapes of the
// test's own.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
// It is long because it is one Prometheus and one httplog taken through a sequence of steps.
func TestPrometheusScrapes(t *testing.T) {
	tp := newTopology(t)
	wrk := tool(t, "wrk")
	ng := tp.startNginx(tp.srvNS)
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-metrics", "127.0.0.1:9731")
	api := startPrometheus(t, tp, tp.srvNS, "127.0.0.1:9090", "127.0.0.1:9731")
	c := nsClient(tp.srvNS)

	script := tempFile(t, "pace.lua", "-- a pause between the requests of a connection, in ms\nfunction delay()\n\treturn 2\nend\n")
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
// It is long because the rules' unit tests are written out in it.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool")
	rules := rulesFile(t)
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests := tempFile(t, "rules_test.yml", fmt.Sprintf(`# written by prometheus_test.go
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
`, rules))
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
