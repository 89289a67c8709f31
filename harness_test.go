package main

// The harness of the tests that run the httplog binary: the binary built
// once, processes started and ended by PID, waits for what can be seen (a
// message, a line in a file, an exit) instead of fixed sleeps, and the one
// reader of statistics lines. Its other parts: harness_log_test.go reads
// the log directory and cuts log lines into fields, and checks them
// against the requests made; harness_net_test.go makes network namespaces
// and veth pairs and sends raw frames; harness_http_test.go runs nginx and
// curl in them.
//
// The behaviour tests that use it: live_test.go, fanout_live_test.go,
// pairing_live_test.go, pairing_memory_test.go, e2e_*_test.go,
// ship_test.go, fault_test.go, script_test.go, script_config_test.go,
// privilege_test.go, install_test.go, and TestPipeStalled
// (pcapfile_test.go); docs/E2E.md says what each proves.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// harnessTools are the programs the binary tests run, with the Debian
// package that provides each.
var harnessTools = map[string]string{
	"ip":         "iproute2",
	"nginx":      "nginx-light",
	"curl":       "curl",
	"wrk":        "wrk",
	"tcpreplay":  "tcpreplay",
	"prometheus": "prometheus", // prometheus_test.go
	"promtool":   "prometheus",
	// install_test.go and privilege_test.go
	"systemd-analyze": "systemd",
	"logrotate":       "logrotate",
	"man":             "man-db",
	"groff":           "groff-base",
	"useradd":         "passwd",
	// ship_test.go
	"rsyslogd": "rsyslog",
}

// requireRoot skips the test unless it runs as root; why says what needs
// root.
func requireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s (run go test as root)", why)
	}
}

// tool returns the path of one of harnessTools; a missing tool fails the
// test (it does not skip it) and names the Debian package to install.
func tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// PATH may lack the sbin directories (nginx and ip live there).
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	pkg := harnessTools[name]
	t.Fatalf("%s is not installed: the tests need it; install the Debian package %s (apt-get install %s)", name, pkg, pkg)
	return ""
}

// testEnv is the environment of the programs started here: ours, without
// HTTPLOG_* settings (only the flags count) and without proxies (curl must
// talk to the test's nginx, never to a proxy).
func testEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "HTTPLOG_") || strings.HasSuffix(strings.ToLower(name), "_proxy") {
			continue
		}
		env = append(env, kv)
	}
	if os.Getenv("GORACE") == "" {
		// A daemon built with -race sleeps 1 s at exit by default.
		env = append(env, "GORACE=atexit_sleep_ms=50")
	}
	return env
}

// raceEnabled reports whether this test binary was built with -race; the
// daemon is then built with -race too, so that a data race in the live
// pipeline fails the tests.
func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// goBuild builds the main package in dir into the file out.
func goBuild(dir, out string, race bool) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, append(args, ".")...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, b)
	}
	return nil
}

// httplogBuild builds the httplog binary once per test process, next to
// the test binary in go's work directory (which go test removes
// afterwards), and returns its path.
var httplogBuild = sync.OnceValues(func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(filepath.Dir(exe), "httplog-test")
	return bin, goBuild(".", bin, raceEnabled())
})

// httplogBinary returns the httplog binary. Under go test it is built
// once (httplogBuild); a test binary run by hand builds it into each
// test's temporary directory instead, so that nothing is left behind.
func httplogBinary(t testing.TB) string {
	t.Helper()
	var bin string
	var err error
	if exe, _ := os.Executable(); strings.Contains(exe, "go-build") {
		bin, err = httplogBuild()
	} else {
		bin = filepath.Join(t.TempDir(), "httplog")
		err = goBuild(".", bin, raceEnabled())
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// copyHttplog copies the binary to dir/httplog, for a test that must
// tell its own processes apart by their executable.
func copyHttplog(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "httplog")
	writeFile(t, bin, readFile(t, httplogBinary(t)), 0o755)
	return bin
}

// syncBuffer collects a process's output; safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// contains reports whether the output so far holds text.
func (b *syncBuffer) contains(text string) bool {
	return strings.Contains(b.String(), text)
}

// waitText waits up to d until the output holds text; it reports whether
// it does.
func (b *syncBuffer) waitText(text string, d time.Duration) bool {
	return waitFor(d, func() bool { return b.contains(text) })
}

// proc is a process started by a test, known by its PID.
type proc struct {
	name    string
	cmd     *exec.Cmd
	stdout  syncBuffer
	stderr  syncBuffer
	started time.Time
	done    chan struct{} // closed when it has exited and been reaped
	err     error         // of Wait, once done is closed
}

// startProc starts cmd (in the environment testEnv unless cmd.Env is
// set), collecting its output, and reaps it on a goroutine of its own.
// If the test leaves it running, a cleanup ends it by its PID.
func startProc(t testing.TB, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	if cmd.Env == nil {
		cmd.Env = testEnv()
	}
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p.started = time.Now()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.terminate(3 * time.Second); !p.exited() {
			t.Errorf("%s (pid %d) survives KILL", name, cmd.Process.Pid)
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// terminate ends the process (by its PID): TERM, then KILL after grace.
func (p *proc) terminate(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if p.wait(grace) {
		return
	}
	_ = p.cmd.Process.Kill()
	p.wait(5 * time.Second)
}

// exitCode is the exit code of a process that has exited, -1 if a signal
// ended it.
func (p *proc) exitCode() int {
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// waitHttplogStarted waits until httplog says it has started (its socket
// and filter are in place, so traffic sent afterwards is captured).
func waitHttplogStarted(t testing.TB, p *proc, argv []string) {
	t.Helper()
	ok := waitFor(10*time.Second, func() bool { return p.exited() || p.stderr.contains(" started: ") })
	if !ok || p.exited() {
		t.Fatalf("httplog %s did not start (exited: %v, %v); stderr:\n%s", strings.Join(argv, " "), p.exited(), p.err, p.stderr.String())
	}
	t.Logf("httplog: %s", strings.TrimSpace(p.stderr.String()))
}

// stopHttplog sends SIGTERM and checks that httplog exits with code 0
// within a few seconds, reporting no data race; it returns its standard
// error.
func stopHttplog(t testing.TB, p *proc) string {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to httplog (pid %d): %v", p.cmd.Process.Pid, err)
	}
	if !p.wait(5 * time.Second) {
		t.Fatalf("httplog (pid %d) still runs 5 s after SIGTERM; stderr:\n%s", p.cmd.Process.Pid, p.stderr.String())
	}
	stderr := p.stderr.String()
	t.Logf("httplog exited %v after SIGTERM: %v; stderr:\n%s", time.Since(start).Round(time.Millisecond), p.err, stderr)
	if p.err != nil {
		t.Errorf("httplog exited with %v after SIGTERM, want exit code 0", p.err)
	}
	if strings.Contains(stderr, "DATA RACE") {
		t.Errorf("the race detector found a data race in httplog")
	}
	if out := p.stdout.String(); out != "" {
		t.Errorf("httplog wrote to standard output with -d DIR:\n%s", out)
	}
	return stderr
}

// runCmd runs cmd to its end (in the environment testEnv unless cmd.Env
// is set) and returns its standard output, standard error and exit code;
// a command that cannot run fails the test.
func runCmd(t testing.TB, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	if cmd.Env == nil {
		cmd.Env = testEnv()
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	return out.String(), errOut.String(), code
}

// runHttplog runs the binary with args to its end, with the variables
// env added to testEnv.
func runHttplog(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(httplogBinary(t), args...)
	cmd.Env = append(testEnv(), env...)
	return runCmd(t, cmd)
}

// pipedHttplog is httplog reading packets from a pipe the test writes to
// (-r -), so that it runs as long as the test wants without a network.
type pipedHttplog struct {
	*proc
	in   io.WriteCloser
	pcap *pcapgo.Writer
	sent int // requests written so far
}

// startPiped starts httplog -r - -log_every 0 with the extra args (a
// later -log_every wins), and writes the header of a pcap capture.
func startPiped(t *testing.T, args ...string) *pipedHttplog {
	t.Helper()
	d := startPipedRaw(t, args...)
	if err := d.pcap.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	return d
}

// startPipedRaw is startPiped without the capture header: nothing is
// written to the pipe yet.
func startPipedRaw(t *testing.T, args ...string) *pipedHttplog {
	t.Helper()
	cmd := exec.Command(httplogBinary(t), append([]string{"-r", "-", "-log_every", "0"}, args...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	return &pipedHttplog{proc: startProc(t, "httplog", cmd), in: in, pcap: pcapgo.NewWriter(in)}
}

// send writes n requests GET /NNNNNN (Host h), numbered on from the last,
// captured now.
func (d *pipedHttplog) send(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		fr := ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, fmt.Sprintf("GET /%06d HTTP/1.1\r\nHost: h\r\n\r\n", d.sent))
		d.sent++
		if err := d.pcap.WritePacket(gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(fr), Length: len(fr)}, fr); err != nil {
			t.Fatal(err)
		}
	}
}

// sendUntil sends one request at a time until cond holds for the
// statistics line it makes (run with -log_every 1), or limit has passed.
func (d *pipedHttplog) sendUntil(t *testing.T, limit time.Duration, cond func(stats map[string]uint64) bool) bool {
	t.Helper()
	for end := time.Now().Add(limit); time.Now().Before(end); {
		d.send(t, 1)
		var stats map[string]uint64
		if !waitFor(5*time.Second, func() bool {
			stats = parseStatsLine(lastStatsLine(d.stderr.String()))
			return stats["packets"] == uint64(d.sent)
		}) {
			t.Fatalf("no statistics line for packet %d (run with -log_every 1?):\n%s", d.sent, d.stderr.String())
		}
		if cond(stats) {
			return true
		}
	}
	return false
}

// end closes the pipe and waits for httplog to exit; it returns the exit
// code and the standard error.
func (d *pipedHttplog) end(t *testing.T) (int, string) {
	t.Helper()
	d.in.Close()
	return d.waitExit(t, "its input closed")
}

// finish is end for a clean exit, which it checks; it returns the
// standard error.
func (d *pipedHttplog) finish(t *testing.T) string {
	t.Helper()
	code, stderr := d.end(t)
	if code != 0 {
		t.Fatalf("httplog: %v\n%s", d.err, stderr)
	}
	return stderr
}

// stop sends SIGTERM, with the pipe left open, and checks for a clean
// exit.
func (d *pipedHttplog) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code, stderr := d.waitExit(t, "SIGTERM"); code != 0 {
		t.Fatalf("httplog: %v\n%s", d.err, stderr)
	}
}

// waitExit waits up to 10 s for httplog to exit after what was done to
// it; it returns the exit code and the standard error.
func (d *pipedHttplog) waitExit(t *testing.T, after string) (int, string) {
	t.Helper()
	if !d.wait(10 * time.Second) {
		t.Fatalf("httplog did not end after %s\n%s", after, d.stderr.String())
	}
	return d.exitCode(), d.stderr.String()
}

// waitFor calls cond until it holds, for up to d; it reports whether it
// did.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// writeFile writes a file of the test, failing it on an error.
func writeFile(t testing.TB, name, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

// tempFile writes text into a file name of a new temporary directory of
// the test, and returns its path.
func tempFile(t testing.TB, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	writeFile(t, path, text, 0o644)
	return path
}

// statsLines are the statistics lines in a process's messages, in order,
// each from "stats: " to the end of its line.
func statsLines(messages string) []string {
	var lines []string
	for _, l := range strings.Split(messages, "\n") {
		if i := strings.Index(l, "stats: "); i >= 0 {
			lines = append(lines, l[i:])
		}
	}
	return lines
}

// lastStatsLine is the last statistics line of httplog's messages, "" if
// none.
func lastStatsLine(messages string) string {
	i := strings.LastIndex(messages, "stats: ")
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(messages[i:], "\n")
	return line
}

// parseStatsLine reads the counters of one statistics line, NAME=VALUE
// each.
func parseStatsLine(line string) map[string]uint64 {
	stats := map[string]uint64{}
	for _, f := range strings.Fields(strings.TrimPrefix(line, "stats: ")) {
		k, v, _ := strings.Cut(f, "=")
		stats[k], _ = strconv.ParseUint(v, 10, 64)
	}
	return stats
}

// parseStats reads the counters of the last statistics line, which must
// hold every counter of the registry (counterDefs), those of pairing only
// with -pair.
func parseStats(t testing.TB, messages string) map[string]uint64 {
	t.Helper()
	line := lastStatsLine(messages)
	if line == "" {
		t.Fatalf("no statistics line:\n%s", messages)
	}
	stats := parseStatsLine(line)
	_, pair := stats["paired"] // the pairing counters come all or none
	for id, def := range counterDefs {
		if _, ok := stats[def.name]; !ok && (pair || !isPairCounter(counterID(id))) {
			t.Errorf("statistics line without %s: %s", def.name, line)
		}
	}
	return stats
}

// checkStatsAddUp checks the final statistics line: every packet read is
// in exactly one counter of an outcome (CQ, CR, SQ, SR, not_http,
// fragments, malformed, unsupported_link).
func checkStatsAddUp(t testing.TB, messages string) {
	t.Helper()
	n := parseStats(t, messages)
	var sum uint64
	for _, def := range counterDefs {
		if def.outcome {
			sum += n[def.name]
		}
	}
	if sum != n["packets"] || n["lines_lost"] != 0 {
		t.Errorf("counters do not add up to packets=%d (sum %d): %s", n["packets"], sum, lastStatsLine(messages))
	}
	if _, ok := n["paired"]; ok { // -pair: every request and response start is in one pairing counter
		if n["CQ"]+n["SQ"] != n["paired"]+n["unanswered"]+n["request_copies"] ||
			n["CR"]+n["SR"] != n["paired"]+n["unmatched"]+n["interim"]+n["response_copies"] {
			t.Errorf("pairing counters do not add up to the request and response lines: %s", lastStatsLine(messages))
		}
	}
}
