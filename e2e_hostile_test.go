package main

// TestE2EHostile (see e2e_test.go and docs/E2E.md): what a hostile or
// broken network sends, replayed from the corpus or made here
// (e2e_frames_test.go).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// TestE2EHostile feeds httplog what a hostile or broken network sends: (a)
// every capture of the corpus replayed by tcpreplay into the veth, and (b)
// frames made here — random bytes, truncated and inconsistent headers,
// control bytes and invalid UTF-8 in requests, 8 KB lines — sent with a
// raw AF_PACKET socket, and odd requests made with curl. httplog must keep
// running, exit 0 on SIGTERM, write exactly the lines it should, each
// exactly one line of valid UTF-8.
func TestE2EHostile(t *testing.T) {
	t.Run("replay", e2eHostileReplay)
	t.Run("frames", e2eHostileFrames)
}

// e2eHostileReplay replays the corpus. The lines must be those that httplog
// -r gives for the frames that were sent: tcpreplay sends every frame of a
// capture as it is (whatever the capture's link type), except those the
// kernel refuses (larger than the MTU, shorter than an Ethernet header),
// which it names; so the frames sent, written to an Ethernet capture, are
// what the veth carried.
func e2eHostileReplay(t *testing.T) {
	tp := newTopology(t)
	tp.setMTU(9000)
	dir := newLogDir(t)
	// -local: every address is this host's, as for -r; -s: whole frames.
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-p", "any", "-s", "65535", "-b", "64", "-local", "0.0.0.0/0,::/0")
	sent := e2eReplayCorpus(t, tp)

	// What httplog -r makes of the same frames.
	out, rerr, code := runHttplog(t, nil, "-r", writePcap(t, layers.LinkTypeEthernet, sent, time.Now()), "-p", "any", "-d", "-")
	if code != 0 {
		t.Fatalf("httplog -r: exit %d\n%s", code, rerr)
	}
	want := map[string]int{}
	wantN := 0
	for _, l := range parseLogText(t, "httplog -r", out) {
		want[l.rest]++
		wantN++
	}
	// The last lines come once the ring has handed over its last block
	// and the writer's tick has come; a shortfall is judged below.
	waitLogLines(dir, wantN, 5*time.Second)
	_, stats, lines, got := e2eStopAndRead(t, d, dir)
	missing, extra := e2eDiff(want, got)
	shortfall := wantN - len(lines)
	t.Logf("%d lines live (CQ %d, CR %d), %d from httplog -r; kernel_drops=%d left_in_ring=%d malformed=%d fragments=%d",
		len(lines), stats["CQ"], stats["CR"], wantN, stats["kernel_drops"], stats["left_in_ring"], stats["malformed"], stats["fragments"])
	if len(extra) > 0 {
		t.Errorf("%d lines that httplog -r does not write:\n%s", len(extra), strings.Join(extra, "\n"))
	}
	// A veth loses nothing at this volume; a frame the ring had no room
	// for is counted, and may have been an HTTP start.
	if lost := stats["kernel_drops"] + stats["left_in_ring"]; (lost == 0 && len(missing) > 0) || uint64(max(shortfall, 0)) > lost {
		t.Errorf("%d lines of httplog -r missing (kernel_drops+left_in_ring=%d):\n%s", len(missing), lost, strings.Join(missing, "\n"))
	}
	if stats["lines_lost"] != 0 || stats["write_errors"] != 0 {
		t.Errorf("lines lost: %v", stats)
	}
}

// e2eReplayCorpus replays every capture of the corpus from the client's
// end with tcpreplay --topspeed, and returns the frames that were sent.
// tcpreplay spends most of its ~65 ms setting up and tearing down its
// socket (the kernel waits for RCU grace periods), so a few run at once.
func e2eReplayCorpus(t *testing.T, tp *topology) [][]byte {
	t.Helper()
	tcpreplay := tool(t, "tcpreplay")
	captures := corpusCaptures(t)
	start := time.Now()
	outs, errs := make([][]byte, len(captures)), make([]error, len(captures))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 6)
	for i, capture := range captures {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			outs[i], errs[i] = tp.exec(tp.cliNS, tcpreplay, "-i", tp.cliIf, "--topspeed", capture)
		}()
	}
	wg.Wait()
	var sent [][]byte
	refused := map[string]string{}
	failedFrames := 0
	for i, capture := range captures {
		name, _ := filepath.Rel(filepath.Join(corpusDir(t), "pcaps"), capture)
		if errs[i] != nil {
			refused[name] = fmt.Sprintf("%v: %s", errs[i], e2eReplayRefusal(outs[i]))
			continue
		}
		failed := e2eReplayFailed(t, name, outs[i])
		failedFrames += len(failed)
		for i, f := range e2eReadCapture(t, capture) {
			if !failed[i+1] { // tcpreplay numbers packets from 1
				sent = append(sent, f)
			}
		}
	}
	replayed := len(captures) - len(refused)
	t.Logf("replayed %d of %d captures (%d frames sent, %d refused by the kernel, in %v); tcpreplay refused %d:",
		replayed, len(captures), len(sent), failedFrames, time.Since(start).Round(time.Millisecond), len(refused))
	for _, name := range slices.Sorted(maps.Keys(refused)) {
		t.Logf("  %s: %s", name, refused[name])
	}
	if replayed < 150 {
		t.Errorf("only %d captures replayed", replayed)
	}
	return sent
}

// e2eReplayRefusal is tcpreplay's reason for refusing a capture: the line
// that says "Unable", or all it said.
func e2eReplayRefusal(out []byte) string {
	why := strings.TrimSpace(string(out))
	for _, l := range strings.Split(why, "\n") {
		if strings.Contains(l, "Unable") {
			return strings.TrimSpace(l)
		}
	}
	return why
}

var (
	e2eFailedRE = regexp.MustCompile(`send\(\) \[(\d+)\]`)
	e2eFailedN  = regexp.MustCompile(`Failed packets:\s+(\d+)`)
)

// e2eReplayFailed is the set of packets (numbered from 1) that tcpreplay
// says the kernel refused to send; they must be as many as it counts.
func e2eReplayFailed(t *testing.T, name string, out []byte) map[int]bool {
	t.Helper()
	failed := map[int]bool{}
	for _, m := range e2eFailedRE.FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.Atoi(m[1])
		failed[n] = true
	}
	if m := e2eFailedN.FindStringSubmatch(string(out)); m != nil && m[1] != strconv.Itoa(len(failed)) {
		t.Fatalf("tcpreplay %s: %s failed packets, %d named:\n%s", name, m[1], len(failed), out)
	}
	return failed
}

// e2eHostileFrames sends hand-made frames and curl requests.
func e2eHostileFrames(t *testing.T) {
	tp := newTopology(t)
	tp.setMTU(9000) // room for the 8 KB lines in one frame
	ng := tp.startNginx(tp.srvNS)
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-p", "any", "-s", "65535", "-b", "64")

	from := time.Now()
	want, source := e2eSendHostile(t, tp)
	xs := e2eOddRequests(t, tp)
	to := time.Now()
	total := 0
	for _, x := range xs {
		for _, l := range []string{x.requestText("CQ"), x.responseText("CR")} {
			want[l]++
			source[l] = "curl " + x.req.method + " " + x.req.url
		}
	}
	for _, n := range want {
		total += n
	}
	// The last lines come once the ring has handed over its last block
	// and the writer's tick has come; what is missing is judged below.
	waitLogLines(dir, total, 5*time.Second)
	stderr, stats, lines, got := e2eStopAndRead(t, d, dir)
	access := ng.stop(t)
	for _, l := range lines {
		if l.ts.Before(from.Add(-time.Second)) || l.ts.After(to.Add(time.Second)) {
			t.Errorf("timestamp %s outside the run: %s", l.ts.Format(time.StampMilli), l.rest)
		}
	}
	for l, n := range want {
		if got[l] < n {
			t.Errorf("frame %q: no line %s", source[l], e2eShort(l))
		}
	}
	if _, extra := e2eDiff(want, got); len(extra) > 0 {
		t.Errorf("%d lines not expected:\n%s", len(extra), strings.Join(extra, "\n"))
	}
	if t.Failed() || testing.Verbose() {
		var all []string
		for _, l := range lines {
			all = append(all, e2eShort(l.rest))
		}
		t.Logf("the lines written:\n%s", strings.Join(all, "\n"))
	}
	t.Logf("%d curl requests; %d lines; stats: malformed=%d fragments=%d not_http=%d packets=%d",
		len(xs), len(lines), stats["malformed"], stats["fragments"], stats["not_http"], stats["packets"])
	e2eCheckHostileStats(t, stderr, len(lines))
	e2eCheckReceived(t, access, xs)
}

// e2eSendHostile sends the frames of e2eFrames from the client's end and
// returns the lines they must make (each with its count) and, for each
// line, the name of the frame that makes it.
func e2eSendHostile(t *testing.T, tp *topology) (want map[string]int, source map[string]string) {
	t.Helper()
	frames := e2eFrames(tp)
	raw := make([][]byte, len(frames))
	for i, f := range frames {
		raw[i] = f.data
	}
	errs, err := sendFrames(tp.cliNS, tp.cliIf, raw)
	if err != nil {
		t.Fatal(err)
	}
	want, source = map[string]int{}, map[string]string{}
	refusedShort, starts := 0, 0
	for i, f := range frames {
		switch {
		case errs[i] == nil:
		case len(f.data) < 14 && errors.Is(errs[i], unix.EINVAL):
			refusedShort++ // the kernel sends no frame shorter than its header
			continue
		default:
			t.Errorf("sending frame %q (%d bytes): %v", f.name, len(f.data), errs[i])
			continue
		}
		for _, w := range f.want {
			want[w]++
			source[w] = f.name
			starts++
		}
	}
	t.Logf("%d frames (%d refused by the kernel as shorter than an Ethernet header), %d HTTP starts among them", len(frames), refusedShort, starts)
	return want, source
}

// e2eOddRequests makes odd requests that curl accepts, to nginx (which
// answers or refuses).
func e2eOddRequests(t *testing.T, tp *topology) []exchange {
	t.Helper()
	odd := []curlRequest{
		{method: "GET", url: httpURL(tp.srv4, 80, "/a/../b/./c/%2e%2e/"), args: []string{"--path-as-is"}, ua: "hl-odd/1"},
		{method: "GET", url: httpURL(tp.srv4, 80, "/p\\q\"r<s>t{u}v|w^x`y"), args: []string{"--path-as-is"}, target: "/p\\q\"r<s>t{u}v|w^x`y"},
		{method: "GET", url: httpURL(tp.srv4, 8080, "/\xff\xe2\x82\xc3\xa9"), args: []string{"--path-as-is"}, target: "/%ff%e2%82%c3%a9"}, // curl escapes bytes ≥ 0x80
		{method: "GET", url: httpURL(tp.srv6, 80, "/x?q=a'b&c=[]&d=%00"), args: []string{"--path-as-is"}, ua: "ua\x1b[1m\x7f\\\xff\xe2\x82 end\x01"},
		{method: "OPTIONS", url: httpURL(tp.srv4, 80, "/api"), ua: "日本語 \xf0\x9f\x98\x80 \xc0\xaf \xed\xa0\x80"},
		{method: "GET", url: httpURL(tp.srv4, 80, "/hello.txt"), host: "h\x02st\\name.test"},
	}
	var xs []exchange
	for _, r := range odd {
		xs = append(xs, tp.curl(t, tp.cliNS, r))
	}
	return xs
}

// e2eCheckHostileStats checks the final statistics after the hostile
// frames: the broken ones counted, nothing lost or dropped, no SQ or SR,
// and the CQ and CR counts those of the n lines in the files.
func e2eCheckHostileStats(t *testing.T, stderr string, n int) {
	t.Helper()
	stats := parseStats(t, stderr)
	for _, k := range []string{"malformed", "fragments", "not_http"} {
		if stats[k] == 0 {
			t.Errorf("stats: %s=0 after the broken frames: %s", k, lastStatsLine(stderr))
		}
	}
	for _, k := range []string{"kernel_drops", "lines_lost", "write_errors", "SQ", "SR"} {
		if stats[k] != 0 {
			t.Errorf("stats: %s=%d, want 0: %s", k, stats[k], lastStatsLine(stderr))
		}
	}
	if int(stats["CQ"]+stats["CR"]) != n {
		t.Errorf("stats count CQ+CR=%d, the files hold %d lines", stats["CQ"]+stats["CR"], n)
	}
}

// e2eCheckReceived checks that what nginx received is what the expected
// lines say curl sent.
func e2eCheckReceived(t *testing.T, access []string, xs []exchange) {
	t.Helper()
	byPort := map[uint16]accessEntry{}
	for _, l := range access {
		a, ok := parseAccess(l)
		if !ok {
			t.Errorf("access log line not in the test's format: %q", l)
			continue
		}
		byPort[a.client.Port()] = a
	}
	for _, x := range xs {
		a, ok := byPort[x.client.Port()]
		switch {
		case !ok:
			t.Errorf("nginx did not log %s %s (client %s)", x.req.method, x.req.url, endpoint(x.client))
		case a.request != x.requestLine:
			t.Errorf("nginx received the request line %q, the test expects curl to send %q", a.request, x.requestLine)
		case a.status != 400 && x.ua != "-" && a.ua != x.ua: // on a bad Host nginx stops reading headers
			t.Errorf("nginx received User-Agent %q, the test expects %q", a.ua, x.ua)
		}
	}
}

// e2eStopAndRead checks that httplog still runs, stops it, checks that its
// counters add up and that its files hold whole lines, and returns its
// standard error, its counters, its lines, and how often each line's text
// (after the timestamp) occurs.
func e2eStopAndRead(t *testing.T, d *proc, dir string) (string, map[string]uint64, []logLine, map[string]int) {
	t.Helper()
	if d.exited() {
		t.Fatalf("httplog died: %v\n%s", d.err, d.stderr.String())
	}
	stderr := stopHttplog(t, d)
	stats := parseStats(t, stderr)
	checkStatsAddUp(t, stderr)
	lines := readLogDir(t, dir)
	checkLogBytes(t, dir)
	got := map[string]int{}
	for _, l := range lines {
		got[l.rest]++
	}
	return stderr, stats, lines, got
}

// e2eDiff compares two multisets of lines: what want has more of
// (missing) and what got has more of (extra), sorted, each with its count.
func e2eDiff(want, got map[string]int) (missing, extra []string) {
	for l, n := range want {
		if got[l] < n {
			missing = append(missing, fmt.Sprintf("%d× %s", n-got[l], e2eShort(l)))
		}
	}
	for l, n := range got {
		if want[l] < n {
			extra = append(extra, fmt.Sprintf("%d× %s", n-want[l], e2eShort(l)))
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// e2eShort shortens a very long line for a message.
func e2eShort(s string) string {
	if len(s) > 300 {
		return fmt.Sprintf("%s…(%d bytes)…%s", s[:200], len(s)-250, s[len(s)-50:])
	}
	return s
}

// e2eReadCapture returns the frames of a pcap or pcapng file, in order, as
// captured (up to a cut at the end of a truncated file).
func e2eReadCapture(t *testing.T, name string) [][]byte {
	t.Helper()
	b := []byte(readFile(t, name))
	if len(b) < 4 {
		return nil
	}
	r := bytes.NewReader(b)
	var read func() ([]byte, error)
	if binary.BigEndian.Uint32(b) == 0x0a0d0d0a {
		ng, err := pcapgo.NewNgReader(r, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		read = func() ([]byte, error) { b, _, err := ng.ReadPacketData(); return b, err }
	} else {
		pr, err := pcapgo.NewReader(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pr.SetSnaplen(1 << 20)
		read = func() ([]byte, error) { b, _, err := pr.ReadPacketData(); return b, err }
	}
	var frames [][]byte
	for {
		b, err := read()
		if err != nil {
			return frames
		}
		frames = append(frames, b)
	}
}
