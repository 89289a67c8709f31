package main

// TestPairMemory: the pairing table filled to its size (issue 9, item 6),
// in the binary read from a pipe.

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// TestPairMemory: httplog -r - reads, from a pipe, a capture of 1,000,000
// connections each with one request that is never answered, with -pair
// -pair_max 1000000 (one parser, so its share is the whole table and
// nothing is evicted). Once every request has been through the table (a
// statistics line says CQ=1000000; filler ACKs after the requests keep
// the lines coming), its peak resident memory (VmHWM) exceeds that of
// the same run without -pair by no more than the memory the start
// message states, and stays under 300 MB; at exit unanswered=1000000 and
// pair_evicted=0. Both runs write a statistics line every 10 packets,
// garbage for the collector: with the table on Go's heap, the collector
// let as much garbage as the table pile up before collecting (391 MB).
// The binary is built without -race, whose shadow memory would be
// measured too. (The process must still run when VmHWM is read:
// the ru_maxrss of a finished child is at least its parent's size, as the
// child's memory before exec is the parent's.)
func TestPairMemory(t *testing.T) {
	const conns = 1000000
	bin := pairPlainBinary(t)
	plainErr, plain := pairPeakMemory(t, bin, conns)
	pairErr, paired := pairPeakMemory(t, bin, conns, "-pair", "-pair_max", strconv.Itoa(conns))

	stats := parseStats(t, pairErr)
	checkStatsAddUp(t, pairErr)
	if stats["CQ"] != conns || stats["unanswered"] != conns || stats["paired"] != 0 || stats["pair_evicted"] != 0 {
		t.Errorf("want CQ=unanswered=%d, paired=0, pair_evicted=0: %s", conns, lastStatsLine(pairErr))
	}
	if s := parseStats(t, plainErr); s["CQ"] != conns {
		t.Errorf("without -pair: CQ=%d, want %d: %s", s["CQ"], conns, lastStatsLine(plainErr))
	}
	var table int
	var stated float64
	_, said, _ := strings.Cut(pairErr, "pairing up to ")
	if _, err := fmt.Sscanf(said, "%d connections in %f MB", &table, &stated); err != nil {
		t.Fatalf("the start message does not state the pairing table's memory (%v):\n%s", err, pairErr)
	}
	t.Logf("start message: pairing up to %d connections in %.1f MB; peak RSS %.1f MB with -pair, %.1f MB without: %.3f MB more",
		table, stated, float64(paired)/1e6, float64(plain)/1e6, (float64(paired)-float64(plain))/1e6)
	if table != conns {
		t.Errorf("the start message states %d connections, want %d", table, conns)
	}
	// The rest of the process differs from run to run by up to about a
	// megabyte (a 240.4 MB table measured 240.0 to 241.5 MB more, the
	// runs without -pair alone 10.7 to 11.5 MB): 2 MB of slack, under 1 %
	// of the table.
	if (float64(paired) - float64(plain)) > stated*1e6+2e6 {
		t.Errorf("-pair added %.1f MB of peak RSS, more than the %.1f MB the start message states", (float64(paired)-float64(plain))/1e6, stated)
	}
	if paired >= 300e6 {
		t.Errorf("peak RSS with -pair_max %d: %.1f MB, want under 300 MB", conns, float64(paired)/1e6)
	}
}

// pairPlainBinary builds httplog without -race (whatever this test binary
// was built with) into the test's temporary directory.
func pairPlainBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "httplog-plain")
	if err := goBuild(".", bin, false); err != nil {
		t.Fatal(err)
	}
	return bin
}

// pairPeakMemory runs bin -r - with the extra flags on a pipe that carries
// the capture of pairUnanswered(n), then filler ACKs until a statistics
// line says every request was logged; it reads the peak resident memory
// then, closes the pipe and returns the start message and the last
// statistics line, and that peak. A statistics line every 10 packets
// makes garbage for the collector.
func pairPeakMemory(t *testing.T, bin string, n int, extra ...string) (string, uint64) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(bin, append([]string{"-r", "-", "-p", "80", "-d", "-", "-log_every", "10"}, extra...)...)
	cmd.Env = testEnv()
	var stderr pairStderr
	cmd.Stderr = &stderr // standard output (the lines) goes to /dev/null
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // by PID, if the test fails before it ends
	stop := make(chan struct{})
	fed := make(chan error, 1)
	go func() { fed <- pairUnanswered(in, n, stop) }()
	logged := waitFor(60*time.Second, func() bool { return parseStatsLine(lastStatsLine(stderr.String()))["CQ"] == uint64(n) })
	var hwm uint64
	if logged {
		hwm = procVmHWM(t, cmd.Process.Pid)
	}
	close(stop)
	if err := <-fed; err != nil {
		t.Errorf("writing the capture to httplog: %v", err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("httplog %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, stderr.String())
	}
	if !logged {
		t.Fatalf("httplog %s did not log %d requests:\n%s", strings.Join(cmd.Args[1:], " "), n, stderr.String())
	}
	t.Logf("httplog %s: %v, peak RSS %.1f MB", strings.Join(cmd.Args[1:], " "), time.Since(start).Round(time.Millisecond), float64(hwm)/1e6)
	return stderr.String(), hwm
}

// pairStderr keeps, of what httplog writes on standard error, the lines
// before the first statistics line and the last statistics line.
type pairStderr struct {
	mu          sync.Mutex
	head, stats string
}

func (w *pairStderr) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range strings.SplitAfter(string(p), "\n") {
		switch {
		case strings.Contains(l, "stats: "):
			w.stats = l
		case w.stats == "":
			w.head += l
		}
	}
	return len(p), nil
}

func (w *pairStderr) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.head + w.stats
}

// pairUnanswered writes to w a capture of n connections from distinct
// clients (10.0.0.0/8, ports cycling from 40000) to 192.0.2.80:80, each
// one request start and nothing else, 5 µs apart (5 s in all for a
// million: well inside -pair_timeout, so every connection is in the table
// at the end); then pure ACKs of the first connection, 100 µs apart and
// 1000 at a time, until stop is closed.
func pairUnanswered(w io.Writer, n int, stop <-chan struct{}) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	pw := pcapgo.NewWriterNanos(bw)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	frame := ipv4HTTP("10.0.0.1", "192.0.2.80", 40000, 80, "GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
	const srcIP, srcPort = 14 + 12, 14 + 20 // offsets of the client's address and port
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ci := gopacket.CaptureInfo{CaptureLength: len(frame), Length: len(frame)}
	for i := 0; i < n; i++ {
		c, port := i+1, 40000+i%20000 // 10.0.0.1 on
		frame[srcIP+1], frame[srcIP+2], frame[srcIP+3] = byte(c>>16), byte(c>>8), byte(c)
		frame[srcPort], frame[srcPort+1] = byte(port>>8), byte(port)
		ci.Timestamp = at.Add(time.Duration(i) * 5 * time.Microsecond)
		if err := pw.WritePacket(ci, frame); err != nil {
			return err
		}
	}
	ack := ipv4HTTP("10.0.0.1", "192.0.2.80", 40000, 80, "")
	ci.CaptureLength, ci.Length = len(ack), len(ack)
	for {
		for i := 0; i < 1000; i++ {
			// The capture's clock moves on, so that the reader hands on
			// the last batch of requests (after maxBatchDelay).
			ci.Timestamp = ci.Timestamp.Add(100 * time.Microsecond)
			if err := pw.WritePacket(ci, ack); err != nil {
				return err
			}
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		default:
		}
	}
}
