package main

// The tests of start_httplog.sh, run for real as root: each copies the
// script and the httplog binary into a directory of its own, starts the
// daemon on lo through the script, sends HTTP requests over loopback to a
// server of its own, and checks start, status, stop, restart,
// force-reload, the log lines, the exit codes and the protection of
// foreign pids.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scriptRun is the outcome of one run of the script.
type scriptRun struct {
	out  string // standard output and error
	code int    // exit code
}

// scriptEnv is a test environment for start_httplog.sh: the script and
// the binary side by side, a configuration for lo, and an HTTP server on
// loopback.
type scriptEnv struct {
	t        *testing.T
	tmp      string // the test's directory
	script   string // start_httplog.sh, copied next to bin
	bin      string // the httplog binary, resolved path
	dir      string // the working directory of the script ("": the test's)
	port     int    // of the HTTP server on 127.0.0.1
	conf     string // configuration: lo, port, logDir, pidFile
	logDir   string
	pidFile  string
	messages string // the daemon's messages file
}

// newScriptEnv makes the environment, with the script and the binary
// copied into a directory of the test's own. Whatever happens, no process
// of the test's binary survives the test.
func newScriptEnv(t *testing.T) *scriptEnv {
	t.Helper()
	requireRoot(t, "httplog captures on lo with AF_PACKET, started by start_httplog.sh")
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := scriptEnvFor(t, tmp, filepath.Join(tmp, "start_httplog.sh"), copyHttplog(t, tmp))
	writeFile(t, e.script, readFile(t, "start_httplog.sh"), 0o755)
	return e
}

// scriptEnvFor is the environment of the script and the binary given,
// with the log directory, the pid file and the configuration in tmp.
func scriptEnvFor(t *testing.T, tmp, script, bin string) *scriptEnv {
	t.Helper()
	e := &scriptEnv{t: t, tmp: tmp, script: script, bin: bin}
	t.Cleanup(func() { e.killAll(e.bin) })

	// A tiny HTTP server on loopback: the port is free since we hold it.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	e.logDir = filepath.Join(tmp, "log")
	e.pidFile = filepath.Join(tmp, "httplog.pid")
	e.messages = filepath.Join(e.logDir, "httplog.messages")
	e.conf = e.loConf(filepath.Join(tmp, "test.conf"), "HTTPLOG_DIR="+e.logDir, "HTTPLOG_PIDFILE="+e.pidFile, "HTTPLOG_STOP_TIMEOUT=10")
	return e
}

// writeConf writes a configuration file (and its directory if need be)
// and returns its path.
func (e *scriptEnv) writeConf(path, text string) string {
	e.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		e.t.Fatal(err)
	}
	writeFile(e.t, path, text, 0o644)
	return path
}

// loConf writes a configuration for lo, the HTTP server's port and a
// statistics line every packet, with the lines given after those.
func (e *scriptEnv) loConf(path string, lines ...string) string {
	e.t.Helper()
	return e.writeConf(path, fmt.Sprintf("HTTPLOG_DEVICE=lo\nHTTPLOG_PORT=%d\nHTTPLOG_LOG_EVERY=1\n", e.port)+strings.Join(lines, "\n")+"\n")
}

// killAll kills the processes left running bin.
func (e *scriptEnv) killAll(bin string) {
	for _, pid := range scriptPIDsOf(bin) {
		e.t.Logf("cleanup: killing leftover pid %d (%s)", pid, bin)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// run runs the script with one action, with HTTPLOG_CONF=conf and the
// extra variables, and no other HTTPLOG_* variable from the environment.
func (e *scriptEnv) run(conf string, action string, extra ...string) scriptRun {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", e.script, action)
	cmd.Dir = e.dir
	cmd.Env = append(append(testEnv(), "HTTPLOG_CONF="+conf), extra...)
	cmd.WaitDelay = 2 * time.Second // a daemon holding our pipes must not hang the test
	out, err := cmd.CombinedOutput()
	r := scriptRun{out: string(out)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		e.t.Fatalf("start_httplog.sh %s: %v\n%s", action, err, out)
	}
	if ctx.Err() != nil {
		e.t.Fatalf("start_httplog.sh %s: timed out\n%s", action, out)
	}
	e.t.Logf("start_httplog.sh %s → exit %d\n%s", action, r.code, strings.TrimRight(r.out, "\n"))
	return r
}

// expect runs an action and fails unless it exits with code.
func (e *scriptEnv) expect(conf, action string, code int, extra ...string) scriptRun {
	e.t.Helper()
	r := e.run(conf, action, extra...)
	if r.code != code {
		e.t.Fatalf("start_httplog.sh %s: exit code %d, want %d; output:\n%s", action, r.code, code, r.out)
	}
	return r
}

// start runs start, or restart, with conf and the extra variables; it
// must succeed and print "httplog started (pid N)": it returns N.
func (e *scriptEnv) start(conf, action string, extra ...string) int {
	e.t.Helper()
	r := e.expect(conf, action, 0, extra...)
	_, rest, ok := strings.Cut(r.out, "httplog started (pid ")
	digits, _, _ := strings.Cut(rest, ")")
	pid, err := strconv.Atoi(digits)
	if !ok || err != nil {
		e.t.Fatalf("no %q in the output of %s:\n%s", "httplog started (pid N)", action, r.out)
	}
	return pid
}

// stop runs stop with conf and the extra variables, which must succeed,
// and checks that pid, running bin, is gone.
func (e *scriptEnv) stop(conf string, pid int, bin string, extra ...string) scriptRun {
	e.t.Helper()
	r := e.expect(conf, "stop", 0, extra...)
	if !waitFor(time.Second, func() bool { return scriptExeOf(pid) != bin }) {
		e.t.Fatalf("pid %d still runs after stop", pid)
	}
	return r
}

// only checks that pid is the one process running the binary.
func (e *scriptEnv) only(pid int) {
	e.t.Helper()
	if pids := scriptPIDsOf(e.bin); len(pids) != 1 || pids[0] != pid {
		e.t.Fatalf("processes of %s: %v, want only %d", e.bin, pids, pid)
	}
}

// noDaemon checks that no process runs the binary and that none of the
// files named (pid files, directories) exists.
func (e *scriptEnv) noDaemon(names ...string) {
	e.t.Helper()
	if pids := scriptPIDsOf(e.bin); len(pids) != 0 {
		e.t.Fatalf("processes of %s run: %v", e.bin, pids)
	}
	for _, name := range names {
		scriptMustNotExist(e.t, name)
	}
}

// get makes a request to the HTTP server, with the User-Agent ua unless
// it is "".
func (e *scriptEnv) get(path, ua string) {
	e.t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", e.port, path), nil)
	if ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// scriptExeOf is the executable of a live process ("" if gone or a zombie).
func scriptExeOf(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(exe, " (deleted)")
}

// scriptPIDsOf lists the live processes running the executable bin.
func scriptPIDsOf(bin string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err == nil && scriptExeOf(pid) == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidFileHolds checks that the pid file name holds pid.
func pidFileHolds(t *testing.T, name string, pid int) {
	t.Helper()
	b := readFile(t, name)
	if got, err := strconv.Atoi(strings.TrimSpace(b)); err != nil || got != pid {
		t.Fatalf("pid file %s holds %q, want %d", name, b, pid)
	}
}

func scriptMustNotExist(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Fatalf("%s should not exist (stat: %v)", name, err)
	}
}

// TestStartScriptStart: start starts the daemon once (pid file, log
// directory 0750), status shows it, a second start says it is running
// and starts no other.
func TestStartScriptStart(t *testing.T) {
	e := newScriptEnv(t)
	pid := e.start(e.conf, "start")
	pidFileHolds(t, e.pidFile, pid)
	if scriptExeOf(pid) != e.bin {
		t.Fatalf("pid %d runs %q, want %s", pid, scriptExeOf(pid), e.bin)
	}
	if fi, err := os.Stat(e.logDir); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o750 {
		t.Fatalf("log directory %s has mode %v, want 0750", e.logDir, fi.Mode().Perm())
	}
	if r := e.expect(e.conf, "status", 0); !strings.Contains(r.out, strconv.Itoa(pid)) {
		t.Fatalf("status does not show pid %d:\n%s", pid, r.out)
	}
	if r := e.expect(e.conf, "start", 0); !strings.Contains(r.out, fmt.Sprintf("already running (pid %d)", pid)) {
		t.Fatalf("second start does not say already running (pid %d):\n%s", pid, r.out)
	}
	e.only(pid)
	pidFileHolds(t, e.pidFile, pid)
}

// TestStartScriptStopKeepsLines: stop right after requests: their lines
// are in the files (the daemon flushes on SIGTERM, and reads the frames
// still in its ring), and its final statistics line is in the messages
// file, after the start banner. Once stopped, status says 3, stop still
// succeeds and force-reload says 7.
func TestStartScriptStopKeepsLines(t *testing.T) {
	e := newScriptEnv(t)
	pid := e.start(e.conf, "start")
	ua := fmt.Sprintf("httplog-script-test/1.0 (pid %d)", os.Getpid())
	var paths []string
	for i := 0; i < 3; i++ {
		path := fmt.Sprintf("/script-test/%d?n=%d", i, i)
		e.get(path, ua)
		paths = append(paths, path)
	}
	if r := e.stop(e.conf, pid, e.bin); !strings.Contains(r.out, "stopped") {
		t.Fatalf("stop does not say stopped:\n%s", r.out)
	}
	scriptMustNotExist(t, e.pidFile)

	lines := readLogDir(t, e.logDir, filepath.Base(e.messages))
	srv := fmt.Sprintf("127.0.0.1#%d", e.port)
	for _, path := range paths {
		want := fmt.Sprintf("GET %s HTTP/1.1 127.0.0.1:%d %s", path, e.port, ua)
		n := 0
		for _, l := range lines {
			if l.dst == srv && l.typ == "CQ" && l.msg == want {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d CQ lines %q to %s, want 1; the log files hold:\n%s", n, want, srv, logText(lines))
		}
	}
	cr := 0
	for _, l := range lines {
		if l.src == srv && strings.HasPrefix(l.dst, "127.0.0.1#") && l.typ == "CR" && l.msg == "HTTP/1.1 200 OK 2 text/plain" {
			cr++
		}
	}
	if cr != len(paths) {
		t.Errorf("%d CR lines, want %d; the log files hold:\n%s", cr, len(paths), logText(lines))
	}
	msgs := readFile(t, e.messages)
	if !strings.Contains(msgs, " started: interface lo ") {
		t.Errorf("messages file has no start banner:\n%s", msgs)
	}
	if n := parseStats(t, msgs); n["CQ"] != uint64(len(paths)) || n["CR"] != uint64(len(paths)) {
		t.Errorf("final statistics line %q, want CQ=%d CR=%d", lastStatsLine(msgs), len(paths), len(paths))
	}

	e.expect(e.conf, "status", 3)
	e.expect(e.conf, "stop", 0)
	e.expect(e.conf, "force-reload", 7)
}

// logText is the text of log lines, for a message.
func logText(lines []logLine) string {
	var all []string
	for _, l := range lines {
		all = append(all, l.file+": "+l.ts.Format(logTimeLayout)+" "+l.rest)
	}
	return strings.Join(all, "\n")
}

// TestStartScriptRestartReload: restart from stopped starts the daemon,
// status shows its statistics, force-reload makes it reopen its files
// (SIGHUP), restart while it runs replaces it; then stop, an unknown
// action (2) and status (3).
func TestStartScriptRestartReload(t *testing.T) {
	e := newScriptEnv(t)
	pid2 := e.start(e.conf, "restart")
	e.get("/again", "")
	var st scriptRun
	if !waitFor(5*time.Second, func() bool {
		st = e.expect(e.conf, "status", 0)
		return strings.Contains(st.out, "stats: packets=")
	}) {
		t.Fatalf("status shows no statistics line:\n%s", st.out)
	}
	if !strings.Contains(st.out, strconv.Itoa(pid2)) {
		t.Fatalf("status does not show pid %d:\n%s", pid2, st.out)
	}
	e.expect(e.conf, "force-reload", 0)
	if !waitFor(3*time.Second, func() bool {
		return strings.Count(readFile(t, e.messages), "SIGHUP: log files closed") == 1
	}) {
		t.Fatalf("the daemon did not report SIGHUP in %s", e.messages)
	}
	pid3 := e.start(e.conf, "restart")
	if pid3 == pid2 {
		t.Fatalf("restart kept pid %d", pid2)
	}
	if !waitFor(time.Second, func() bool { return scriptExeOf(pid2) != e.bin }) {
		t.Fatalf("old pid %d still runs after restart", pid2)
	}
	e.only(pid3)
	e.stop(e.conf, pid3, e.bin)
	e.expect(e.conf, "bogus", 2)
	e.expect(e.conf, "status", 3)
}

// TestStartScriptForeignPID: a pid file naming a foreign process: status
// says 1, force-reload 7, stop succeeds and removes the pid file, and the
// process is never signalled.
func TestStartScriptForeignPID(t *testing.T) {
	e := newScriptEnv(t)
	sleeper := startProc(t, "sleep", exec.Command("sleep", "60"))
	writeFile(t, e.pidFile, fmt.Sprintf("%d\n", sleeper.cmd.Process.Pid), 0o644)
	e.expect(e.conf, "status", 1)
	e.expect(e.conf, "force-reload", 7)
	e.expect(e.conf, "stop", 0)
	if err := sleeper.cmd.Process.Signal(syscall.Signal(0)); err != nil || sleeper.exited() {
		t.Fatalf("stop signalled the foreign pid %d of the pid file: %v", sleeper.cmd.Process.Pid, err)
	}
	scriptMustNotExist(t, e.pidFile)
}

// TestStartScriptBadConfig: start fails, naming the cause, with a bad
// interface (1), a bad flag or no directory (6); no daemon is left.
func TestStartScriptBadConfig(t *testing.T) {
	e := newScriptEnv(t)
	badPID := filepath.Join(e.tmp, "bad.pid")
	badConf := e.writeConf(filepath.Join(e.tmp, "bad.conf"), fmt.Sprintf("HTTPLOG_DEVICE=nosuchif0\nHTTPLOG_PORT=%d\nHTTPLOG_DIR=%s\nHTTPLOG_PIDFILE=%s\n",
		e.port, filepath.Join(e.tmp, "badlog"), badPID))
	if r := e.expect(badConf, "start", 1); !strings.Contains(r.out, "nosuchif0") {
		t.Fatalf("start with a bad interface does not name it:\n%s", r.out)
	}
	scriptMustNotExist(t, badPID)
	// A bad flag is a bad configuration (LSB: 6).
	if r := e.expect(badConf, "start", 6, "HTTPLOG_OPTS=-nosuchflag"); !strings.Contains(r.out, "-nosuchflag") {
		t.Fatalf("start with a bad flag does not name it:\n%s", r.out)
	}
	// A daemon needs a directory.
	dashConf := e.writeConf(filepath.Join(e.tmp, "dash.conf"), "HTTPLOG_DEVICE=lo\nHTTPLOG_DIR=-\nHTTPLOG_PIDFILE="+badPID+"\n")
	e.expect(dashConf, "start", 6)
	e.noDaemon()
}

// TestStartScriptKillsDeafDaemon: a process that ignores SIGTERM is
// killed after HTTPLOG_STOP_TIMEOUT, loudly.
func TestStartScriptKillsDeafDaemon(t *testing.T) {
	e := newScriptEnv(t)
	fakeDir := filepath.Join(e.tmp, "fake")
	fake := filepath.Join(fakeDir, "httplog-fake")
	t.Cleanup(func() { e.killAll(fake) })
	if err := os.Mkdir(fakeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(fakeDir, "go.mod"), "module fake\n\ngo 1.21\n", 0o644)
	writeFile(t, filepath.Join(fakeDir, "main.go"), `package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-check" { // start_httplog.sh checks first
		fmt.Println("fake: configuration OK: deaf to SIGTERM, lines to " + os.Getenv("HTTPLOG_DIR") + "/http-YYYYMMDD.log")
		return
	}
	signal.Ignore(syscall.SIGTERM)
	fmt.Fprintln(os.Stderr, "fake: httplog 0 started: deaf to SIGTERM")
	time.Sleep(time.Minute)
}
`, 0o644)
	if err := goBuild(fakeDir, fake, false); err != nil {
		t.Fatal(err)
	}
	fakePID := filepath.Join(e.tmp, "fake.pid")
	fakeConf := e.writeConf(filepath.Join(e.tmp, "fake.conf"), fmt.Sprintf("HTTPLOG_DIR=%s\nHTTPLOG_PIDFILE=%s\nHTTPLOG_BIN=%s\nHTTPLOG_STOP_TIMEOUT=1\n",
		filepath.Join(e.tmp, "fakelog"), fakePID, fake))
	fpid := e.start(fakeConf, "start")
	if r := e.stop(fakeConf, fpid, fake); !strings.Contains(r.out, "did not exit after TERM within 1 s; sent KILL; buffered lines may be lost") {
		t.Fatalf("stop of a process deaf to TERM does not say it sent KILL:\n%s", r.out)
	}
	scriptMustNotExist(t, fakePID)
}
