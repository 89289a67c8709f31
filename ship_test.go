package main

// TestE2ERsyslog: the JSON format read by a real consumer. Two web servers
// (namespaces with nginx) each run httplog -format json -redact and
// Debian's rsyslog, which tails the JSON files (imfile, wildcard
// http-*.json) and forwards every line over TCP (omfwd) to an rsyslog
// collector in a third namespace; the collector parses each event
// (mmjsonparse) and writes selected fields with a template; the second
// server also pairs responses with requests (-pair). Every event
// written arrives once, across a logrotate-style rename and SIGHUP and
// across a day change of the files, and the values the collector parsed
// equal those in httplog's files. It uses the harness of harness_test.go;
// every packet stays inside the namespaces made here.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shipPort is the collector's TCP port, inside its own namespace.
const shipPort = 10514

// shipFields are the fields the collector writes, in its template's order:
// all of them (event.start and event.duration come from web server 2,
// which runs with -pair).
var shipFields = []string{
	"@timestamp", "event.action", "event.start", "event.duration", "httplog.type", "source.ip", "source.port", "destination.ip", "destination.port",
	"network.type", "network.direction", "http.version", "http.request.method", "url.original",
	"http.response.status_code", "http.response.headers.content-type", "http.response.body.bytes",
	"user_agent.original", "httplog.start_line", "httplog.host", "httplog.content_length",
}

// shipCollectorConf is the collector's rsyslog configuration: TCP in,
// mmjsonparse on the whole message (no "@cee:" cookie), the fields of
// shipFields out, tab-separated (the values hold no tab: httplog escapes
// control bytes), and whatever does not parse to a file of its own.
func shipCollectorConf(work, out string) string {
	var tpl strings.Builder
	for i, f := range shipFields {
		sep := `\t`
		if i == len(shipFields)-1 {
			sep = `\n`
		}
		fmt.Fprintf(&tpl, "  property(name=\"$!%s\") constant(value=\"%s\")\n", strings.ReplaceAll(f, ".", "!"), sep)
	}
	return fmt.Sprintf(`# written by ship_test.go: the collector
global(workDirectory=%q maxMessageSize="64k")
module(load="imtcp")
module(load="mmjsonparse")
input(type="imtcp" port="%d" ruleset="collect")
template(name="httplog_fields" type="list") {
%s}
ruleset(name="collect") {
  action(type="mmjsonparse" cookie="")
  if $parsesuccess == "OK" then {
    action(type="omfile" file=%q template="httplog_fields")
  } else {
    action(type="omfile" file=%q)
  }
}
`, work, shipPort, tpl.String(), filepath.Join(out, "events.tsv"), filepath.Join(out, "unparsed.log"))
}

// shipSenderConf is a web server's rsyslog configuration: imfile follows
// every http-*.json of the log directory (new ones too: a new day), and
// omfwd forwards each line over TCP, retrying for ever while the
// collector cannot be reached.
func shipSenderConf(work, logDir, collector string) string {
	return fmt.Sprintf(`# written by ship_test.go: a web server's shipper
global(workDirectory=%q maxMessageSize="64k")
module(load="imfile")
input(type="imfile" file=%q tag="httplog" ruleset="ship")
ruleset(name="ship") {
  action(type="omfwd" target=%q port="%d" protocol="tcp" template="RSYSLOG_SyslogProtocol23Format"
         queue.type="LinkedList" action.resumeRetryCount="-1")
}
`, work, filepath.Join(logDir, "http-*.json"), collector, shipPort)
}

// shipZone writes a time zone file (TZif, version 1) of one fixed offset
// such that local midnight falls at the whole second midnight, and
// returns its path; TZ=path makes httplog's local day change then.
func shipZone(t *testing.T, midnight time.Time) (string, *time.Location) {
	t.Helper()
	off := int32((86400 - midnight.Unix()%86400) % 86400) // local(midnight) = midnight + off, a multiple of a day
	if off > 43200 {
		off -= 86400
	}
	b := []byte("TZif")
	b = append(b, make([]byte, 16)...)             // version 0 (1), 15 reserved bytes
	for _, n := range []uint32{0, 0, 0, 0, 1, 4} { // isutcnt isstdcnt leapcnt timecnt typecnt charcnt
		b = binary.BigEndian.AppendUint32(b, n)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(off)) // the one type: offset, not DST, abbreviation 0
	b = append(b, 0, 0)
	b = append(b, "HLT\x00"...)
	return tempFile(t, "midnight-zone", string(b)), time.FixedZone("HLT", int(off))
}

// shipWeb is one web server of the test: its namespace, the interface
// httplog captures on, its addresses, its log directory and processes,
// and the exchanges curl made with it.
type shipWeb struct {
	ns, iface, v4, v6 string
	collector         string // the collector's address on its link
	dir               string
	nginx             *nginxServer
	httplog           *proc
	xs                []exchange
}

// TestE2ERsyslog: see the top of this file and docs/E2E.md.
// It is long because it is one shipping chain taken through a sequence of steps.
func TestE2ERsyslog(t *testing.T) {
	tp := newTopology(t)
	rsyslogd := tool(t, "rsyslogd")
	webs, col := shipTopology(t, tp)
	out := t.TempDir()
	rsyslogs := []*proc{shipCollector(t, tp, rsyslogd, col, out)}

	// Local midnight of httplog's time zone falls during the test, after
	// the first two rounds of requests: the files change day then.
	midnight := time.Now().Add(20 * time.Second).Truncate(time.Second)
	zone, loc := shipZone(t, midnight)
	t.Setenv("TZ", zone) // for the processes started from here on
	for i, w := range webs {
		flags := []string{"-format", "json", "-redact"}
		if i == 1 {
			flags = append(flags, "-pair") // its response events carry event.start and event.duration
		}
		w.httplog = tp.startHttplog(t, w.ns, w.iface, w.dir, flags...)
		if !w.httplog.stderr.contains("JSON events, redacting") {
			t.Fatalf("httplog does not say it writes JSON events, redacted:\n%s", w.httplog.stderr.String())
		}
		work := t.TempDir()
		conf := tempFile(t, "sender.conf", shipSenderConf(work, w.dir, w.collector))
		rsyslogs = append(rsyslogs, tp.start(t, "rsyslogd sender", w.ns, rsyslogd, "-n", "-f", conf, "-i", filepath.Join(work, "pid")))
	}

	shipRound(t, tp, webs, 1)
	// rsyslog's imfile follows the files by name (http-*.json): what it
	// has not read of a file when it is renamed away is never read. So
	// the rename comes once the collector has the round's events, as a
	// logrotate that rotates only files done with would see it.
	if !waitFor(30*time.Second, func() bool { _, n := shipCollected(out); return n >= 2*6 }) {
		_, n := shipCollected(out)
		t.Fatalf("the collector has %d of the first round's %d events after 30 s", n, 2*6)
	}
	for _, w := range webs {
		shipRotate(t, w, time.Now().In(loc))
	}
	shipRound(t, tp, webs, 2)
	if time.Now().After(midnight.Add(-time.Second)) {
		t.Fatalf("the first rounds took until %s, past the local midnight set for the test (%s): the machine is too slow for it",
			time.Now().Format(time.TimeOnly), midnight.Format(time.TimeOnly))
	}
	waitFor(time.Until(midnight)+30*time.Second, func() bool { return time.Now().After(midnight.Add(200 * time.Millisecond)) })
	shipRound(t, tp, webs, 3) // a new day: new files, found by imfile's wildcard

	want := map[string]int{} // rows of shipFields, as the collector must write them
	total := 0
	for i, w := range webs {
		total += shipCheckFiles(t, i, w, loc, want)
	}
	if total != 2*2*9 {
		t.Errorf("%d events in the files, want %d", total, 2*2*9)
	}
	shipCheckCollected(t, out, want, total)
	for _, p := range rsyslogs {
		if p.exited() {
			t.Errorf("%s exited early: %v\n%s", p.name, p.err, p.stderr.String())
		}
	}
	t.Logf("%d events from two web servers collected once each; files of days %s and %s", total,
		midnight.Add(-time.Second).In(loc).Format("20060102"), midnight.In(loc).Format("20060102"))
}

// shipTopology adds to the topology a second web server on its own link
// to the client, and a collector with a link to each web server; it
// starts nginx on both web servers. It returns the web servers (the
// topology's server is the first) and the collector's namespace.
func shipTopology(t *testing.T, tp *topology) ([]*shipWeb, string) {
	t.Helper()
	x := tp.x
	col := tp.addNamespace("col")
	web2 := tp.addNamespace("web2")
	tp.addLink(linkEnd{web2, "hl-veth-w", fmt.Sprintf("10.201.%d.1", x), "fd00:201::1"},
		linkEnd{tp.cliNS, "hl-veth-c2", fmt.Sprintf("10.201.%d.2", x), "fd00:201::2"})
	webs := []*shipWeb{
		{ns: tp.srvNS, iface: tp.srvIf, v4: tp.srv4, v6: tp.srv6},
		{ns: web2, iface: "hl-veth-w", v4: fmt.Sprintf("10.201.%d.1", x), v6: "fd00:201::1"},
	}
	for i, w := range webs {
		sub := 202 + i
		tp.addLink(linkEnd{w.ns, fmt.Sprintf("hl-veth-l%d", i), fmt.Sprintf("10.%d.%d.1", sub, x), fmt.Sprintf("fd00:%d::1", sub)},
			linkEnd{col, fmt.Sprintf("hl-veth-l%dc", i), fmt.Sprintf("10.%d.%d.2", sub, x), fmt.Sprintf("fd00:%d::2", sub)})
		w.collector = fmt.Sprintf("10.%d.%d.2", sub, x)
		w.nginx = tp.startNginx(w.ns)
		w.dir = newLogDir(t)
	}
	return webs, col
}

// shipCollector starts the collector's rsyslogd in namespace col, writing
// into out, and waits until it listens, before any shipper sends.
func shipCollector(t *testing.T, tp *topology, rsyslogd, col, out string) *proc {
	t.Helper()
	work := t.TempDir()
	conf := tempFile(t, "collector.conf", shipCollectorConf(work, out))
	collector := tp.start(t, "rsyslogd collector", col, rsyslogd, "-n", "-f", conf, "-i", filepath.Join(work, "pid"))
	listening := waitFor(10*time.Second, func() bool {
		o, _ := tp.exec(col, "ss", "-Hltn")
		return collector.exited() || strings.Contains(string(o), fmt.Sprintf(":%d ", shipPort))
	})
	if !listening || collector.exited() {
		t.Fatalf("the rsyslog collector does not listen on %d (exited: %v %v):\n%s", shipPort, collector.exited(), collector.err, collector.stderr.String())
	}
	return collector
}

// shipRound makes round n of requests: to each web server, IPv4 and
// IPv6, a POST with a token to redact, a User-Agent with quotes and a
// backslash.
func shipRound(t *testing.T, tp *topology, webs []*shipWeb, n int) {
	t.Helper()
	for _, w := range webs {
		for _, r := range []curlRequest{
			{method: "GET", url: httpURL(w.v4, 80, fmt.Sprintf("/hello.txt?round=%d", n)), ua: `hl-ship/1 "quoted" \back`},
			{method: "POST", url: httpURL(w.v4, 8080, fmt.Sprintf("/api?token=s3cr3t-%d&x=1", n)), body: "a=1", host: "shop.example.test"},
			{method: "GET", url: httpURL(w.v6, 80, fmt.Sprintf("/missing/%d", n)), ua: "hl-ship-v6/1"},
		} {
			w.xs = append(w.xs, tp.curl(t, tp.cliNS, r))
		}
	}
}

// shipRotate rotates a web server's file of the day in logrotate's way:
// once the 6 events of the first round are in it, renamed, then SIGHUP,
// so that httplog writes a new file of the name.
func shipRotate(t *testing.T, w *shipWeb, day time.Time) {
	t.Helper()
	name := filepath.Join(w.dir, logFileNameAs("", day, ".json"))
	if waitLogLines(w.dir, 2*3, 5*time.Second) < 2*3 {
		t.Fatalf("%s does not hold the 6 events of the first round within 5 s", name)
	}
	if err := os.Rename(name, name+".1"); err != nil {
		t.Fatalf("rotating: %v", err)
	}
	if err := w.httplog.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !w.httplog.stderr.waitText("SIGHUP: log files closed", 5*time.Second) {
		t.Fatalf("httplog did not reopen its files on SIGHUP:\n%s", w.httplog.stderr.String())
	}
}

// shipCheckFiles stops web server i's httplog and nginx and checks its
// files: every line an event to the contract, in the file of its local
// day (loc), two days of files, event.duration only on the responses of
// the server with -pair, the statistics, and the events exactly the
// exchanges made, the request's token redacted. It adds each event's row
// of shipFields to want and returns the number of events.
func shipCheckFiles(t *testing.T, i int, w *shipWeb, loc *time.Location, want map[string]int) int {
	t.Helper()
	stderr := stopHttplog(t, w.httplog)
	w.nginx.stop(t)
	events := map[string]int{} // the text after the timestamp
	count := map[string]int{}
	days := map[string]bool{}
	n := 0
	scanLogDirIn(t, w.dir, loc, func(l logLine) error {
		if l.event == nil || strings.TrimSuffix(l.file, ".1") != logFileNameAs("", l.ts, ".json") {
			return errors.New("not an event of a JSON file of one day (http-YYYYMMDD.json, or .json.1 once rotated)")
		}
		days[l.ts.Format("20060102")] = true
		events[l.rest]++
		if _, timed := l.event["event.duration"]; timed != (i == 1 && l.event.str("event.action") == "response") {
			return fmt.Errorf("event.duration on web server %d's %s event (only -pair's responses have one)", i+1, l.event.str("event.action"))
		}
		count[l.typ]++
		want[shipRow(l.event)]++
		n++
		return nil
	})
	if len(days) != 2 {
		t.Errorf("web server %d: files of days %v, want two", i+1, days)
	}
	checkFinalStats(t, stderr, count)
	expect := map[string]int{}
	for _, x := range w.xs {
		x.requestLine = regexp.MustCompile(`token=[^& ]*`).ReplaceAllString(x.requestLine, "token=REDACTED")
		expect[x.requestText("CQ")]++
		expect[x.responseText("CR")]++
	}
	if missing, extra := e2eDiff(expect, events); len(missing)+len(extra) > 0 {
		t.Errorf("web server %d: events missing:\n%s\nevents not expected:\n%s", i+1, strings.Join(missing, "\n"), strings.Join(extra, "\n"))
	}
	return n
}

// shipCheckCollected waits until the collector has written total events
// into out and checks them: every event once, with the values httplog
// wrote (want), and nothing it could not parse.
func shipCheckCollected(t *testing.T, out string, want map[string]int, total int) {
	t.Helper()
	var got map[string]int
	arrived := waitFor(30*time.Second, func() bool {
		var n int
		got, n = shipCollected(out)
		return n >= total
	})
	if !arrived {
		t.Errorf("the collector has %d of %d events after 30 s", len(got), total)
	}
	if missing, extra := e2eDiff(want, got); len(missing)+len(extra) > 0 {
		t.Errorf("collected events missing:\n%s\ncollected events not written by httplog (or twice):\n%s",
			strings.Join(missing, "\n"), strings.Join(extra, "\n"))
	}
	if b, err := os.ReadFile(filepath.Join(out, "unparsed.log")); err == nil {
		t.Errorf("the collector could not parse:\n%s", b)
	}
}

// shipCollected reads the collector's rows so far: each whole row with its
// count, and the number of rows.
func shipCollected(out string) (map[string]int, int) {
	b, _ := os.ReadFile(filepath.Join(out, "events.tsv"))
	rows, n := map[string]int{}, 0
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if strings.HasSuffix(l, "\n") {
			rows[l]++
			n++
		}
	}
	return rows, n
}

// shipRow is the collector's line for an event: the values of shipFields,
// tab-separated, "" for a field the event does not have.
func shipRow(ev event) string {
	vals := make([]string, len(shipFields))
	for i, f := range shipFields {
		if v, ok := ev[f]; ok {
			vals[i] = fmt.Sprint(v)
		}
	}
	return strings.Join(vals, "\t") + "\n"
}
