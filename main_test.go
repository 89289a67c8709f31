package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
)

var update = flag.Bool("update", false, "rewrite testdata/seed.pcap")

// The seed document's example lines, from packets built here. The seed
// prints "etadata.google.internal": its one visible bug, fixed.
func TestSeedLines(t *testing.T) {
	at := func(s string) time.Time {
		ts, err := time.Parse("2006-01-02 15:04:05.000", s)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	const ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/76.0.3809.132 Safari/537.36"
	const meta = "/computeMetadata/v1/instance/virtual-clock/drift-token?timeout_sec=60&last_etag=c6a7bbfe995acc98&alt=json&recursive=False&wait_for_change=True"
	packets := []struct {
		ts    time.Time
		frame []byte
	}{
		{at("2019-09-01 14:16:51.002"), ipv4HTTP("223.39.188.71", "10.140.0.2", 50905, 80,
			"GET / HTTP/1.1\r\nHost: cloud.sukmoonlee.com\r\nConnection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\nUser-Agent: "+ua+"\r\nAccept: text/html\r\n\r\n")},
		{at("2019-09-01 14:16:51.003"), ipv4HTTP("10.140.0.2", "223.39.188.71", 80, 50905,
			"HTTP/1.1 302 Found\r\nDate: Sun, 01 Sep 2019 05:16:51 GMT\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: 0\r\nLocation: /login\r\n\r\n")},
		{at("2019-09-01 14:17:00.573"), ipv4HTTP("10.140.0.2", "169.254.169.254", 57154, 80,
			"GET "+meta+" HTTP/1.1\r\nAccept-Encoding: identity\r\nHost: metadata.google.internal\r\nMetadata-Flavor: Google\r\nConnection: close\r\nUser-Agent: Python-urllib/2.7\r\n\r\n")},
		{at("2019-09-01 14:17:54.337"), ipv4HTTP("169.254.169.254", "10.140.0.2", 80, 57152,
			"HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Type: application/json\r\nETag: 5d2b8ee6f1d5b3c4\r\nContent-Length: 3274\r\n\r\n{\"attributes\":{}}")},
	}
	var frames [][]byte
	for _, p := range packets {
		frames = append(frames, p.frame)
	}
	path := writePcapTimes(t, frames, func(i int) time.Time { return packets[i].ts })
	// testdata/seed.pcap is this capture, for the README's quick start.
	built, _ := os.ReadFile(path)
	if *update {
		os.WriteFile(filepath.Join("testdata", "seed.pcap"), built, 0o644)
	}
	if kept, err := os.ReadFile(filepath.Join("testdata", "seed.pcap")); err != nil || !bytes.Equal(kept, built) {
		t.Errorf("testdata/seed.pcap is missing or stale (go test -run TestSeedLines -update): %v", err)
	}
	out, stderr, code := runPipeline(t, "-r", path, "-p", "80", "-local", "10.140.0.2", "-d", "-")
	want := "2019-09-01 14:16:51.002 223.39.188.71#50905 10.140.0.2#80 CQ GET / HTTP/1.1 cloud.sukmoonlee.com " + ua + "\n" +
		"2019-09-01 14:16:51.003 10.140.0.2#80 223.39.188.71#50905 CR HTTP/1.1 302 Found 0 text/html; charset=UTF-8\n" +
		"2019-09-01 14:17:00.573 10.140.0.2#57154 169.254.169.254#80 SQ GET " + meta + " HTTP/1.1 metadata.google.internal Python-urllib/2.7\n" +
		"2019-09-01 14:17:54.337 169.254.169.254#80 10.140.0.2#57152 SR HTTP/1.1 200 OK 3274 application/json\n"
	if code != 0 || out != want {
		t.Errorf("exit %d, stderr %s\ngot:\n%s\nwant:\n%s", code, stderr, out, want)
	}
	if n := parseStats(t, stderr); n["packets"] != 4 || n["CQ"] != 1 || n["CR"] != 1 || n["SQ"] != 1 || n["SR"] != 1 {
		t.Errorf("final statistics line wrong:\n%s", stderr)
	}
}

func writePcapTimes(t *testing.T, frames [][]byte, at func(int) time.Time) string {
	return writePcapAt(t, layers.LinkTypeEthernet, frames, at)
}

// TestParsersKeepConnectionOrder: with several parsers, the lines of one
// connection come out in capture order, and no line is lost or doubled.
func TestParsersKeepConnectionOrder(t *testing.T) {
	var frames [][]byte
	const conns, perConn = 40, 50
	for i := 0; i < perConn; i++ {
		for c := 0; c < conns; c++ {
			frames = append(frames, ipv4HTTP("192.0.2.1", "198.51.100.2", uint16(30000+c), 80,
				fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i)))
		}
	}
	path := writePcap(t, layers.LinkTypeEthernet, frames, time.Unix(1567315011, 0))
	for _, cpu := range []string{"1", "2", "7"} {
		out, _, code := runPipeline(t, "-r", path, "-d", "-", "-cpu", cpu)
		if code != 0 {
			t.Fatalf("-cpu %s: exit %d", cpu, code)
		}
		next := map[string]int{}
		lines := parseLogText(t, "-cpu "+cpu, out)
		if len(lines) != conns*perConn {
			t.Fatalf("-cpu %s: %d lines, want %d", cpu, len(lines), conns*perConn)
		}
		for _, l := range lines {
			n := 0
			fmt.Sscanf(l.msg, "GET /%d", &n)
			if n != next[l.src] {
				t.Fatalf("-cpu %s: connection %s: request /%d after /%d", cpu, l.src, n, next[l.src]-1)
			}
			next[l.src]++
		}
	}
}

func TestPacketLimit(t *testing.T) {
	var frames [][]byte
	for i := 0; i < 10; i++ {
		frames = append(frames, ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, getReq))
	}
	path := writePcap(t, layers.LinkTypeEthernet, frames, time.Unix(1567315011, 0))
	for _, tt := range []struct{ c, want int }{{0, 0}, {3, 3}, {-1, 10}, {99, 10}} {
		out, stderr, code := runPipeline(t, "-r", path, "-d", "-", "-c", fmt.Sprint(tt.c))
		if code != 0 || strings.Count(out, "\n") != tt.want || parseStats(t, stderr)["packets"] != uint64(tt.want) {
			t.Errorf("-c %d: exit %d, %d lines, stderr %q; want %d", tt.c, code, strings.Count(out, "\n"), stderr, tt.want)
		}
	}
}

// TestStatisticsLines: a line every -log_every packets, one at exit, and
// every kind of skipped packet counted.
func TestStatisticsLines(t *testing.T) {
	frames := [][]byte{
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, getReq),
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, "body bytes"),
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 8080, getReq), // not a watched port
		ether(etherIPv4, nil, ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0x2000|185, []byte("x"))),
		ether(etherIPv4, nil, []byte{0x45, 0, 0}),
		ipv4HTTP("198.51.100.2", "192.0.2.1", 80, 40000, "HTTP/1.1 200 OK\r\n\r\n"),
	}
	path := writePcap(t, layers.LinkTypeEthernet, frames, time.Unix(1567315011, 0))
	_, stderr, code := runPipeline(t, "-r", path, "-d", "-", "-log_every", "2")
	stats := statsLines(stderr)
	if code != 0 || len(stats) != 4 {
		t.Fatalf("exit %d, %d statistics lines, want 3 periodic and 1 final:\n%s", code, len(stats), stderr)
	}
	want := "stats: packets=6 bytes=%d CQ=1 CR=1 SQ=0 SR=0 not_http=2 fragments=1 malformed=1 unsupported_link=0 kernel_drops=0 kernel_freezes=0 left_in_ring=0 write_errors=0 lines_lost=0"
	size := 0
	for _, f := range frames {
		size += len(f)
	}
	if stats[3] != fmt.Sprintf(want, size) {
		t.Errorf("final statistics\n got %s\nwant %s", stats[3], fmt.Sprintf(want, size))
	}
}

// TestLogFilesFromCapture: lines land in the file of their own local day,
// split or not, with the modes of the spec.
func TestLogFilesFromCapture(t *testing.T) {
	before := time.Date(2019, 9, 1, 23, 59, 59, 999e6, time.UTC)
	frames := [][]byte{
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, getReq),
		ipv4HTTP("198.51.100.2", "192.0.2.1", 80, 40000, "HTTP/1.1 200 OK\r\n\r\n"),
	}
	path := writePcapTimes(t, frames, func(i int) time.Time { return before.Add(time.Duration(i) * time.Millisecond) })
	for _, split := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "new", "logs")
		args := []string{"-r", path, "-d", dir}
		want := map[string]string{
			"http-20190901.log": "2019-09-01 23:59:59.999 192.0.2.1#40000 198.51.100.2#80 CQ GET /index.html HTTP/1.1 www.example.com curl/8.0\n",
			"http-20190902.log": "2019-09-02 00:00:00.000 198.51.100.2#80 192.0.2.1#40000 CR HTTP/1.1 200 OK - -\n",
		}
		if split {
			args = append(args, "-log_split")
			want = map[string]string{"http-CQ-20190901.log": want["http-20190901.log"], "http-CR-20190902.log": want["http-20190902.log"]}
		}
		if _, stderr, code := runPipeline(t, args...); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		info, err := os.Stat(dir)
		if err != nil || info.Mode().Perm() != 0o750 {
			t.Errorf("directory %v, mode %v; want 0750", err, info.Mode().Perm())
		}
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			if e.Name() == lockName {
				continue
			}
			names = append(names, e.Name())
			got, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			if string(got) != want[e.Name()] {
				t.Errorf("split=%v %s: got %q, want %q", split, e.Name(), got, want[e.Name()])
			}
			if info, _ := e.Info(); info.Mode().Perm() != 0o640 {
				t.Errorf("%s: mode %v, want 0640", e.Name(), info.Mode().Perm())
			}
		}
		sort.Strings(names)
		if len(names) != len(want) {
			t.Errorf("split=%v: files %v, want %d", split, names, len(want))
		}
		// A second run appends to the same day's files.
		runPipeline(t, args...)
		for name, w := range want {
			if got, _ := os.ReadFile(filepath.Join(dir, name)); string(got) != w+w {
				t.Errorf("second run: %s holds %q, want the lines twice", name, got)
			}
		}
	}
}

func TestCPUProfile(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	if _, stderr, code := runPipeline(t, "-r", filepath.Join("testdata", "seed.pcap"), "-d", "-", "-cpuprofile", prof); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if info, err := os.Stat(prof); err != nil || info.Size() == 0 {
		t.Errorf("no profile written: %v", err)
	}
	_, stderr, code := runPipeline(t, "-r", filepath.Join("testdata", "seed.pcap"), "-d", "-", "-cpuprofile", "/nonexistent/dir/cpu.prof")
	if code != 1 || !strings.HasPrefix(stderr, "httplog: -cpuprofile /nonexistent/dir/cpu.prof: ") {
		t.Errorf("bad profile path: exit %d, %q", code, stderr)
	}
}

// fakeLive is a packet source with kernel counters, as a live socket has.
type fakeLive struct {
	frames [][]byte
	kernel kernelCounts
	closed bool
}

func (s *fakeLive) next(f *frame) error {
	if len(s.frames) == 0 {
		return io.EOF
	}
	f.data, f.ts, f.wire, f.link = s.frames[0], 1567315011e9, len(s.frames[0]), linkEthernet
	s.frames = s.frames[1:]
	return nil
}
func (s *fakeLive) kernelStats() kernelCounts { return s.kernel }
func (s *fakeLive) drainTime() time.Duration  { return 0 }
func (s *fakeLive) describe() string          { return "fake" }
func (s *fakeLive) close()                    { s.closed = true }

// TestReaderKernelAccounting: frames the kernel delivered but the reader
// did not read (here: past -c) are counted in left_in_ring, drops apart.
func TestReaderKernelAccounting(t *testing.T) {
	frame := ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, "body")
	src := &fakeLive{frames: [][]byte{frame, frame, frame, frame, frame}, kernel: kernelCounts{received: 9, drops: 2, freezes: 1}}
	q := make(chan *pktBatch, 1)
	free := make(chan *pktBatch, 1)
	free <- &pktBatch{}
	reported := false
	reg := &registry{}
	c := readerConfig{limit: 3, report: func() { reported = true }}
	if err := <-startReaders(context.Background(), []packetSource{src}, c, []chan *pktBatch{q}, free, reg); err != nil {
		t.Fatal(err)
	}
	var want counterValues
	want[cPackets], want[cBytes], want[cNotHTTP] = 3, uint64(3*len(frame)), 3
	want[cKernelDrops], want[cKernelFreezes], want[cLeftInRing] = 2, 1, 9-2-3
	if got := reg.read(); got != want || !src.closed || reported {
		t.Errorf("stats %v, closed %v\nwant %v", got, src.closed, want)
	}
	if _, open := <-q; open {
		t.Error("the parser queue was not closed")
	}
}

// TestCPUsFollowFlag: reading a file, -cpu sets how many CPUs the binary
// runs on, unless -procs or GOMAXPROCS is set; the start message says
// which. (A live capture's follow the load: TestLiveProcessorsFollowLoad.)
func TestCPUsFollowFlag(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		cpu  string
		want string
	}{
		{nil, "1", "1 parser(s) on 1 CPU(s)"},
		{nil, "2", fmt.Sprintf("2 parser(s) on %d CPU(s)", min(2, runtime.NumCPU()))},
		// Never more CPUs than the machine has.
		{nil, "256", fmt.Sprintf("256 parser(s) on %d CPU(s)", min(256, runtime.NumCPU()))},
		{[]string{"GOMAXPROCS=3"}, "1", "1 parser(s) on 3 CPU(s)"},
		// -procs fixes them, GOMAXPROCS still wins.
		{[]string{"HTTPLOG_PROCS=1"}, "2", "2 parser(s) on 1 CPU(s), lines"},
		{[]string{"HTTPLOG_PROCS=1", "GOMAXPROCS=2"}, "2", "2 parser(s) on 2 CPU(s), lines"},
	} {
		out, stderr, code := runHttplog(t, tt.env, "-r", filepath.Join("testdata", "seed.pcap"), "-d", "-", "-cpu", tt.cpu)
		if code != 0 || !strings.Contains(stderr, tt.want) {
			t.Errorf("-cpu %s %v: exit %d, want %q in\n%s%s", tt.cpu, tt.env, code, tt.want, out, stderr)
		}
	}
}

// idleLive is a live source on a quiet link: no frame ever comes.
type idleLive struct{ fakeLive }

func (s *idleLive) next(f *frame) error { return errTimeout }

// TestStatisticsOnQuietLink: with -log_every set, a reader that sees no
// packet still writes the statistics line every reportEvery (a minute in
// serve), so the latest line is never stale; without, it writes none.
func TestStatisticsOnQuietLink(t *testing.T) {
	for _, every := range []time.Duration{time.Millisecond, 0} {
		ctx, cancel := context.WithCancel(context.Background())
		reports := make(chan struct{}, 100)
		c := readerConfig{limit: -1, logEvery: 10000, reportEvery: every, report: func() { reports <- struct{}{} }}
		done := startReaders(ctx, []packetSource{&idleLive{}}, c, []chan *pktBatch{make(chan *pktBatch)}, make(chan *pktBatch), &registry{})
		if every > 0 {
			<-reports
			<-reports // two lines with no packet in between
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if every == 0 && len(reports) != 0 {
			t.Errorf("reportEvery 0: %d statistics lines, want none", len(reports))
		}
	}
}

// TestRegistrySumsSets: the registry sums every goroutine's set, and the
// statistics line names every counter once, in the registry's order.
func TestRegistrySumsSets(t *testing.T) {
	reg := &registry{}
	a, b := reg.newSet(), reg.newSet()
	a.add(cPackets, 3)
	b.add(cPackets, 4)
	var v counterValues
	v[cLinesLost] = 5
	b.publish(&v) // publish replaces the set's values
	got := reg.read()
	if got[cPackets] != 3 || got[cLinesLost] != 5 {
		t.Errorf("read %v, want packets=3 lines_lost=5", got)
	}
	line := statsLine(got, true)
	for i, def := range counterDefs {
		field := strings.Fields(line)[1+i]
		if name, _, _ := strings.Cut(field, "="); name != def.name {
			t.Errorf("field %d of %q is %s, want %s", i, line, name, def.name)
		}
	}
	// Without -pair, the line ends where the seed's did.
	if line := statsLine(got, false); !strings.HasSuffix(line, " lines_lost=5") {
		t.Errorf("without -pair: %q", line)
	}
}

// TestReadmeNamesEveryCounter: the README's table of the statistics line
// explains every counter of the registry.
func TestReadmeNamesEveryCounter(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, stats, _ := strings.Cut(string(readme), "## Statistics")
	for _, def := range counterDefs {
		if !strings.Contains(stats, "`"+def.name+"`") {
			t.Errorf("README's statistics section does not explain %s", def.name)
		}
	}
}

// TestReaderQueues: one reader spreads its connections over every parser
// by the flow hash; readers of a fanout group, at least as many as the
// parsers, feed one parser each (reader i, parser i mod P); fewer readers
// than parsers spread as one does. Through startReaders: each request of
// a source reaches the parser of its reader, and one reader reaches both.
func TestReaderQueues(t *testing.T) {
	qs := []chan *pktBatch{make(chan *pktBatch, 64), make(chan *pktBatch, 64)}
	for _, tt := range []struct {
		i, n int
		want []chan *pktBatch
	}{
		{0, 1, qs}, {0, 2, qs[:1]}, {1, 2, qs[1:]}, {2, 3, qs[:1]}, {3, 4, qs[1:]},
	} {
		if got := readerQueues(tt.i, tt.n, qs); len(got) != len(tt.want) || got[0] != tt.want[0] {
			t.Errorf("reader %d of %d feeds %d queue(s), starting at another than want", tt.i, tt.n, len(got))
		}
	}
	three := []chan *pktBatch{qs[0], qs[1], make(chan *pktBatch, 64)}
	if got := readerQueues(1, 2, three); len(got) != 3 {
		t.Errorf("2 readers, 3 parsers: reader 1 feeds %d queue(s), want all 3", len(got))
	}

	// Reader k's requests come from client port 40000+k, on 20 client
	// addresses, so that the flow hash would spread them.
	run := func(readers int) (seen [2]map[uint16]bool) {
		var srcs []packetSource
		for k := range readers {
			var frames [][]byte
			for c := range 20 {
				frames = append(frames, ipv4HTTP(fmt.Sprintf("192.0.2.%d", c+1), "198.51.100.2", uint16(40000+k), 80, getReq))
			}
			srcs = append(srcs, &fakeLive{frames: frames})
		}
		free := make(chan *pktBatch, 64)
		for range cap(free) {
			free <- &pktBatch{}
		}
		queues := []chan *pktBatch{make(chan *pktBatch, 64), make(chan *pktBatch, 64)}
		if err := <-startReaders(context.Background(), srcs, readerConfig{limit: -1, ports: []uint16{80}}, queues, free, &registry{}); err != nil {
			t.Fatal(err)
		}
		for q := range queues {
			seen[q] = map[uint16]bool{}
			for b := range queues[q] {
				for _, it := range b.items {
					seen[q][it.src.Port()] = true
				}
			}
		}
		return seen
	}
	if seen := run(3); len(seen[0]) != 2 || !seen[0][40000] || !seen[0][40002] || len(seen[1]) != 1 || !seen[1][40001] {
		t.Errorf("3 readers, 2 parsers: parser 0 got the requests of ports %v, parser 1 of %v; want 40000 and 40002, and 40001", seen[0], seen[1])
	}
	if seen := run(1); !seen[0][40000] || !seen[1][40000] {
		t.Errorf("1 reader, 2 parsers: the flow hash did not spread its connections over both: %v, %v", seen[0], seen[1])
	}
}
