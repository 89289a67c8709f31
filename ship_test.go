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
// equal those in httplog's files. It reuses the helpers of live_test.go;
// every packet stays inside the namespaces made here.

import (
	"encoding/binary"
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
	path := filepath.Join(t.TempDir(), "midnight-zone")
	liveWrite(t, path, string(b))
	return path, time.FixedZone("HLT", int(off))
}

// shipWeb is one web server of the test: its namespace, the interface
// httplog captures on, its addresses, its log directory and processes.
type shipWeb struct {
	ns, iface, v4, v6 string
	collector         string // the collector's address on its link
	dir               string
	nginx             *liveNginx
	httplog           *liveProc
}

var shipFileRE = regexp.MustCompile(`^http-(\d{8})\.json(\.1)?$`)

func TestE2ERsyslog(t *testing.T) {
	tp := newLiveTopology(t)
	rsyslogd := liveTool(t, "rsyslogd")
	x := tp.x
	// web1 is the topology's server, web2 a second server on its own link
	// to the client; each has a link to the collector.
	col := tp.addNamespace("col")
	web2 := tp.addNamespace("web2")
	tp.addLink(liveEnd{web2, "hl-veth-w", fmt.Sprintf("10.201.%d.1", x), "fd00:201::1"},
		liveEnd{tp.cliNS, "hl-veth-c2", fmt.Sprintf("10.201.%d.2", x), "fd00:201::2"})
	webs := []*shipWeb{
		{ns: tp.srvNS, iface: tp.srvIf, v4: tp.srv4, v6: tp.srv6},
		{ns: web2, iface: "hl-veth-w", v4: fmt.Sprintf("10.201.%d.1", x), v6: "fd00:201::1"},
	}
	for i, w := range webs {
		sub := 202 + i
		tp.addLink(liveEnd{w.ns, fmt.Sprintf("hl-veth-l%d", i), fmt.Sprintf("10.%d.%d.1", sub, x), fmt.Sprintf("fd00:%d::1", sub)},
			liveEnd{col, fmt.Sprintf("hl-veth-l%dc", i), fmt.Sprintf("10.%d.%d.2", sub, x), fmt.Sprintf("fd00:%d::2", sub)})
		w.collector = fmt.Sprintf("10.%d.%d.2", sub, x)
		w.nginx = tp.startNginx(w.ns)
		w.dir = liveLogDir(t)
	}

	// The collector, listening before any shipper sends.
	out, colWork := t.TempDir(), t.TempDir()
	colConf := filepath.Join(t.TempDir(), "collector.conf")
	liveWrite(t, colConf, shipCollectorConf(colWork, out))
	collector := tp.start("rsyslogd collector", col, rsyslogd, "-n", "-f", colConf, "-i", filepath.Join(colWork, "pid"))
	listening := liveWaitFor(10*time.Second, func() bool {
		o, _ := tp.exec(col, "ss", "-Hltn")
		return collector.exited() || strings.Contains(string(o), fmt.Sprintf(":%d ", shipPort))
	})
	if !listening || collector.exited() {
		t.Fatalf("the rsyslog collector does not listen on %d (exited: %v %v):\n%s", shipPort, collector.exited(), collector.err, collector.stderr.String())
	}

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
		w.httplog = startHttplog(t, tp, w.ns, w.iface, w.dir, flags...)
		if !strings.Contains(w.httplog.stderr.String(), "JSON events, redacting") {
			t.Fatalf("httplog does not say it writes JSON events, redacted:\n%s", w.httplog.stderr.String())
		}
		work := t.TempDir()
		conf := filepath.Join(t.TempDir(), "sender.conf")
		liveWrite(t, conf, shipSenderConf(work, w.dir, w.collector))
		tp.start("rsyslogd sender", w.ns, rsyslogd, "-n", "-f", conf, "-i", filepath.Join(work, "pid"))
	}

	var xs [2][]liveExchange // by web server
	round := func(n int) {
		for i, w := range webs {
			for _, r := range []liveRequest{
				{method: "GET", url: liveURL(w.v4, 80, fmt.Sprintf("/hello.txt?round=%d", n)), ua: `hl-ship/1 "quoted" \back`},
				{method: "POST", url: liveURL(w.v4, 8080, fmt.Sprintf("/api?token=s3cr3t-%d&x=1", n)), body: "a=1", host: "shop.example.test"},
				{method: "GET", url: liveURL(w.v6, 80, fmt.Sprintf("/missing/%d", n)), ua: "hl-ship-v6/1"},
			} {
				xs[i] = append(xs[i], liveCurl(t, tp, tp.cliNS, r))
			}
		}
	}
	round(1)
	// A logrotate-style rotation: the day's file renamed, then SIGHUP, so
	// that httplog writes a new file of the name.
	for _, w := range webs {
		day := time.Now().In(loc).Format("20060102")
		name := filepath.Join(w.dir, "http-"+day+".json")
		flushed := liveWaitFor(5*time.Second, func() bool {
			b, _ := os.ReadFile(name)
			return strings.Count(string(b), "\n") == 2*3
		})
		if !flushed {
			t.Fatalf("%s does not hold the 6 events of the first round within 5 s", name)
		}
		if err := os.Rename(filepath.Join(w.dir, "http-"+day+".json"), filepath.Join(w.dir, "http-"+day+".json.1")); err != nil {
			t.Fatalf("rotating: %v", err)
		}
		if err := w.httplog.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if !liveWaitFor(5*time.Second, func() bool { return strings.Contains(w.httplog.stderr.String(), "SIGHUP: log files closed") }) {
			t.Fatalf("httplog did not reopen its files on SIGHUP:\n%s", w.httplog.stderr.String())
		}
	}
	round(2)
	if time.Now().After(midnight.Add(-time.Second)) {
		t.Fatalf("the first rounds took until %s, past the local midnight set for the test (%s): the machine is too slow for it",
			time.Now().Format(time.TimeOnly), midnight.Format(time.TimeOnly))
	}
	liveWaitFor(time.Until(midnight)+30*time.Second, func() bool { return time.Now().After(midnight.Add(200 * time.Millisecond)) })
	round(3) // a new day: new files, found by imfile's wildcard

	// httplog's events: every file, every line to the contract, each in
	// the file of its own local day.
	want := map[string]int{} // rows of shipFields, as the collector must write them
	total := 0
	for i, w := range webs {
		stderr := stopHttplog(t, w.httplog)
		w.nginx.stop(t)
		events := map[string]int{} // textOf, after the timestamp
		count := map[string]int{}
		days := map[string]bool{}
		for name := range liveFileNames(t, w.dir) {
			m := shipFileRE.FindStringSubmatch(name)
			if m == nil {
				t.Errorf("unexpected file %s in %s", name, w.dir)
				continue
			}
			days[m[1]] = true
			b := mustRead(t, filepath.Join(w.dir, name))
			for _, line := range strings.SplitAfter(string(b), "\n") {
				if line == "" {
					continue
				}
				ev, err := parseEvent([]byte(line))
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				ts, _ := time.Parse(jsonTime, ev.str("@timestamp"))
				if day := ts.In(loc).Format("20060102"); day != m[1] {
					t.Errorf("%s: an event of local day %s: %s", name, day, line)
				}
				events[textOf(ev)[24:]]++
				if _, timed := ev["event.duration"]; timed != (i == 1 && ev.str("event.action") == "response") {
					t.Errorf("%s: event.duration on web server %d's %s event (only -pair's responses have one): %s", name, i+1, ev.str("event.action"), line)
				}
				count[ev.str("httplog.type")]++
				want[shipRow(ev)]++
				total++
			}
		}
		if len(days) != 2 {
			t.Errorf("web server %d: files of days %v, want two (midnight at %s)", i+1, days, midnight.In(loc))
		}
		liveCheckStats(t, stderr, count)
		// Each exchange once as a request (CQ) and once as a response
		// (CR), the request's token redacted.
		expect := map[string]int{}
		for _, x := range xs[i] {
			x.requestLine = regexp.MustCompile(`token=[^& ]*`).ReplaceAllString(x.requestLine, "token=REDACTED")
			expect[x.requestText("CQ")+"\n"]++
			expect[x.responseText("CR")+"\n"]++
		}
		if missing, extra := e2eDiff(expect, events); len(missing)+len(extra) > 0 {
			t.Errorf("web server %d: events missing:\n%s\nevents not expected:\n%s", i+1, strings.Join(missing, "\n"), strings.Join(extra, "\n"))
		}
	}
	if total != 2*2*9 {
		t.Errorf("%d events in the files, want %d", total, 2*2*9)
	}

	// The collector: every event once, with the values httplog wrote.
	events := filepath.Join(out, "events.tsv")
	var got map[string]int
	arrived := liveWaitFor(30*time.Second, func() bool {
		b, _ := os.ReadFile(events)
		got = map[string]int{}
		n := 0
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if strings.HasSuffix(l, "\n") {
				got[l]++
				n++
			}
		}
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
	for _, p := range tp.procs {
		if strings.HasPrefix(p.name, "rsyslogd") && p.exited() {
			t.Errorf("%s exited early: %v\n%s", p.name, p.err, p.stderr.String())
		}
	}
	t.Logf("%d events from two web servers collected once each; files of days %s and %s", total,
		midnight.Add(-time.Second).In(loc).Format("20060102"), midnight.In(loc).Format("20060102"))
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
