package main

// TestStartScript runs start_httplog.sh for real, as root: it builds the
// daemon, starts it on lo through the script, sends HTTP requests over
// loopback to a server of its own, and checks start, status, stop,
// restart, force-reload, the log lines, the exit codes and the protection
// of foreign pids.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// scriptEnv is a test environment for start_httplog.sh.
type scriptEnv struct {
	t      *testing.T
	script string // start_httplog.sh, copied next to bin
	bin    string // the httplog binary, resolved path
	dir    string // the working directory of the script ("": the test's)
}

// run runs the script with one action, with HTTPLOG_CONF=conf and the
// extra variables, and no other HTTPLOG_* variable from the environment.
func (e *scriptEnv) run(conf string, action string, extra ...string) scriptRun {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", e.script, action)
	cmd.Dir = e.dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HTTPLOG_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HTTPLOG_CONF="+conf)
	cmd.Env = append(cmd.Env, extra...)
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

var scriptStartedRE = regexp.MustCompile(`httplog started \(pid ([0-9]+)\)`)

// startedPID is the pid printed by a successful start.
func (e *scriptEnv) startedPID(r scriptRun) int {
	e.t.Helper()
	m := scriptStartedRE.FindStringSubmatch(r.out)
	if m == nil {
		e.t.Fatalf("no %q in the output of start:\n%s", "httplog started (pid N)", r.out)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
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

// scriptWaitGone waits up to d for pid to stop running bin.
func scriptWaitGone(pid int, bin string, d time.Duration) bool {
	for end := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if scriptExeOf(pid) != bin {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

func scriptReadPIDFile(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s holds %q", name, b)
	}
	return pid
}

func scriptMustNotExist(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s should not exist (stat: %v)", name, err)
	}
}

func scriptWriteFile(t *testing.T, name, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

func scriptGoBuild(t *testing.T, dir, out string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build in %s: %v\n%s", dir, err, b)
	}
}

func TestStartScript(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: httplog captures on lo with AF_PACKET, started by start_httplog.sh")
	}
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &scriptEnv{t: t, script: filepath.Join(tmp, "start_httplog.sh"), bin: filepath.Join(tmp, "httplog")}
	scriptGoBuild(t, ".", e.bin)
	src, err := os.ReadFile("start_httplog.sh")
	if err != nil {
		t.Fatal(err)
	}
	scriptWriteFile(t, e.script, string(src), 0o755)

	// Whatever happens, no process of ours survives the test.
	var others []int // pids of other helpers (sleep)
	fake := filepath.Join(tmp, "fake", "httplog-fake")
	t.Cleanup(func() {
		for _, bin := range []string{e.bin, fake} {
			for _, pid := range scriptPIDsOf(bin) {
				t.Logf("cleanup: killing leftover pid %d (%s)", pid, bin)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		for _, pid := range others {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	// A tiny HTTP server on loopback: the port is free since we hold it.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	logDir := filepath.Join(tmp, "log")
	pidFile := filepath.Join(tmp, "httplog.pid")
	conf := filepath.Join(tmp, "test.conf")
	scriptWriteFile(t, conf, fmt.Sprintf(`# test configuration
HTTPLOG_DEVICE=lo
HTTPLOG_PORT=%d
HTTPLOG_DIR=%s
HTTPLOG_PIDFILE=%s
HTTPLOG_LOG_EVERY=1
HTTPLOG_STOP_TIMEOUT=10
`, port, logDir, pidFile), 0o644)
	messages := filepath.Join(logDir, "httplog.messages")

	// start, status, start again.
	pid := e.startedPID(e.expect(conf, "start", 0))
	if got := scriptReadPIDFile(t, pidFile); got != pid {
		t.Fatalf("pid file holds %d, start said %d", got, pid)
	}
	if scriptExeOf(pid) != e.bin {
		t.Fatalf("pid %d runs %q, want %s", pid, scriptExeOf(pid), e.bin)
	}
	if fi, err := os.Stat(logDir); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o750 {
		t.Fatalf("log directory %s has mode %v, want 0750", logDir, fi.Mode().Perm())
	}
	if r := e.expect(conf, "status", 0); !strings.Contains(r.out, strconv.Itoa(pid)) {
		t.Fatalf("status does not show pid %d:\n%s", pid, r.out)
	}
	if r := e.expect(conf, "start", 0); !strings.Contains(r.out, fmt.Sprintf("already running (pid %d)", pid)) {
		t.Fatalf("second start does not say already running (pid %d):\n%s", pid, r.out)
	}
	if pids := scriptPIDsOf(e.bin); len(pids) != 1 || pids[0] != pid {
		t.Fatalf("processes of %s: %v, want only %d", e.bin, pids, pid)
	}
	if got := scriptReadPIDFile(t, pidFile); got != pid {
		t.Fatalf("pid file holds %d after the second start, want %d", got, pid)
	}

	// Requests over loopback, then stop: the lines must have been flushed
	// on SIGTERM (the writer flushes only once a second otherwise).
	ua := fmt.Sprintf("httplog-script-test/1.0 (pid %d)", os.Getpid())
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var paths []string
	for i := 0; i < 3; i++ {
		path := fmt.Sprintf("/script-test/%d?n=%d", i, i)
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
		req.Header.Set("User-Agent", ua)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		paths = append(paths, path)
	}
	// Stop at once: lines of frames still in the ring must be kept too.
	if r := e.expect(conf, "stop", 0); !strings.Contains(r.out, "stopped") {
		t.Fatalf("stop does not say stopped:\n%s", r.out)
	}
	if !scriptWaitGone(pid, e.bin, time.Second) {
		t.Fatalf("pid %d still runs after stop", pid)
	}
	scriptMustNotExist(t, pidFile)

	now := time.Now()
	var lines []string
	for _, day := range []time.Time{now.AddDate(0, 0, -1), now} {
		b, err := os.ReadFile(filepath.Join(logDir, "http-"+day.Format("20060102")+".log"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(strings.TrimRight(string(b), "\n"), "\n")...)
	}
	for _, path := range paths {
		want := fmt.Sprintf(" 127.0.0.1#%d CQ GET %s HTTP/1.1 127.0.0.1:%d %s", port, path, port, ua)
		n := 0
		for _, l := range lines {
			if strings.HasSuffix(l, want) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d lines end in %q, want 1; the log files hold:\n%s", n, want, strings.Join(lines, "\n"))
		}
	}
	cr := 0
	for _, l := range lines {
		if strings.Contains(l, fmt.Sprintf(" 127.0.0.1#%d 127.0.0.1#", port)) && strings.HasSuffix(l, " CR HTTP/1.1 200 OK 2 text/plain") {
			cr++
		}
	}
	if cr != len(paths) {
		t.Errorf("%d CR lines, want %d; the log files hold:\n%s", cr, len(paths), strings.Join(lines, "\n"))
	}
	msgs, err := os.ReadFile(messages)
	if err != nil {
		t.Fatalf("messages file: %v", err)
	}
	if !strings.Contains(string(msgs), " started: interface lo ") {
		t.Errorf("messages file has no start banner:\n%s", msgs)
	}
	if want := fmt.Sprintf(" CQ=%d CR=%d ", len(paths), len(paths)); !strings.Contains(scriptLastStats(string(msgs)), want) {
		t.Errorf("final statistics line %q does not contain %q", scriptLastStats(string(msgs)), want)
	}

	// Stopped: status 3, stop is still a success, force-reload 7.
	e.expect(conf, "status", 3)
	e.expect(conf, "stop", 0)
	e.expect(conf, "force-reload", 7)

	// restart from stopped, statistics in status, force-reload, restart
	// while running.
	pid2 := e.startedPID(e.expect(conf, "restart", 0))
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/again", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var st scriptRun
	if !liveWaitFor(5*time.Second, func() bool {
		st = e.expect(conf, "status", 0)
		return strings.Contains(st.out, "stats: packets=")
	}) {
		t.Fatalf("status shows no statistics line:\n%s", st.out)
	}
	if !strings.Contains(st.out, strconv.Itoa(pid2)) {
		t.Fatalf("status does not show pid %d:\n%s", pid2, st.out)
	}
	e.expect(conf, "force-reload", 0)
	if !liveWaitFor(3*time.Second, func() bool {
		b, _ := os.ReadFile(messages)
		return strings.Count(string(b), "SIGHUP: log files closed") == 1
	}) {
		t.Fatalf("the daemon did not report SIGHUP in %s", messages)
	}
	pid3 := e.startedPID(e.expect(conf, "restart", 0))
	if pid3 == pid2 {
		t.Fatalf("restart kept pid %d", pid2)
	}
	if !scriptWaitGone(pid2, e.bin, time.Second) {
		t.Fatalf("old pid %d still runs after restart", pid2)
	}
	if pids := scriptPIDsOf(e.bin); len(pids) != 1 || pids[0] != pid3 {
		t.Fatalf("processes of %s after restart: %v, want only %d", e.bin, pids, pid3)
	}
	e.expect(conf, "stop", 0)
	if !scriptWaitGone(pid3, e.bin, time.Second) {
		t.Fatalf("pid %d still runs after stop", pid3)
	}
	e.expect(conf, "bogus", 2)
	e.expect(conf, "status", 3)

	// A pid file naming a foreign process: never signalled.
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	others = append(others, sleeper.Process.Pid)
	scriptWriteFile(t, pidFile, fmt.Sprintf("%d\n", sleeper.Process.Pid), 0o644)
	e.expect(conf, "status", 1)
	e.expect(conf, "force-reload", 7)
	e.expect(conf, "stop", 0)
	if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("stop signalled the foreign pid %d of the pid file: %v", sleeper.Process.Pid, err)
	}
	scriptMustNotExist(t, pidFile)
	sleeper.Process.Kill()
	sleeper.Wait()

	// A bad interface: start fails with the daemon's error.
	badConf := filepath.Join(tmp, "bad.conf")
	badPID := filepath.Join(tmp, "bad.pid")
	scriptWriteFile(t, badConf, fmt.Sprintf("HTTPLOG_DEVICE=nosuchif0\nHTTPLOG_PORT=%d\nHTTPLOG_DIR=%s\nHTTPLOG_PIDFILE=%s\n",
		port, filepath.Join(tmp, "badlog"), badPID), 0o644)
	if r := e.expect(badConf, "start", 1); !strings.Contains(r.out, "nosuchif0") {
		t.Fatalf("start with a bad interface does not name it:\n%s", r.out)
	}
	scriptMustNotExist(t, badPID)
	// A bad flag is a bad configuration (LSB: 6).
	if r := e.expect(badConf, "start", 6, "HTTPLOG_OPTS=-nosuchflag"); !strings.Contains(r.out, "-nosuchflag") {
		t.Fatalf("start with a bad flag does not name it:\n%s", r.out)
	}
	// A daemon needs a directory.
	dashConf := filepath.Join(tmp, "dash.conf")
	scriptWriteFile(t, dashConf, "HTTPLOG_DEVICE=lo\nHTTPLOG_DIR=-\nHTTPLOG_PIDFILE="+badPID+"\n", 0o644)
	e.expect(dashConf, "start", 6)
	if pids := scriptPIDsOf(e.bin); len(pids) != 0 {
		t.Fatalf("processes of %s left: %v", e.bin, pids)
	}

	t.Run("configuration", func(t *testing.T) { scriptConfiguration(t, e, tmp, port) })

	// A process that ignores SIGTERM is killed after HTTPLOG_STOP_TIMEOUT,
	// loudly.
	fakeDir := filepath.Dir(fake)
	if err := os.Mkdir(fakeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	scriptWriteFile(t, filepath.Join(fakeDir, "go.mod"), "module fake\n\ngo 1.21\n", 0o644)
	scriptWriteFile(t, filepath.Join(fakeDir, "main.go"), `package main

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
	scriptGoBuild(t, fakeDir, fake)
	fakeConf := filepath.Join(tmp, "fake.conf")
	scriptWriteFile(t, fakeConf, fmt.Sprintf("HTTPLOG_DIR=%s\nHTTPLOG_PIDFILE=%s\nHTTPLOG_BIN=%s\nHTTPLOG_STOP_TIMEOUT=1\n",
		filepath.Join(tmp, "fakelog"), filepath.Join(tmp, "fake.pid"), fake), 0o644)
	fpid := e.startedPID(e.expect(fakeConf, "start", 0))
	if r := e.expect(fakeConf, "stop", 0); !strings.Contains(r.out, "did not exit after TERM within 1 s; sent KILL; buffered lines may be lost") {
		t.Fatalf("stop of a process deaf to TERM does not say it sent KILL:\n%s", r.out)
	}
	if !scriptWaitGone(fpid, fake, time.Second) {
		t.Fatalf("pid %d survives stop", fpid)
	}
	scriptMustNotExist(t, filepath.Join(tmp, "fake.pid"))
}

// scriptLastStats is the last statistics line of a messages file.
func scriptLastStats(msgs string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(msgs))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "stats:") {
			last = sc.Text()
		}
	}
	return last
}

// scriptConfiguration checks, in TestStartScript's environment, that a
// bad configuration is refused before anything starts (exit 6, with
// httplog -check's message), that it never keeps stop and status from
// working, and that relative paths do not depend on the caller.
func scriptConfiguration(t *testing.T, e0 *scriptEnv, tmp string, port int) {
	env := func(t *testing.T, dir string) *scriptEnv {
		return &scriptEnv{t: t, script: e0.script, bin: e0.bin, dir: dir}
	}
	// conf writes a configuration for lo and the test server's port into
	// dir, with the lines given after those.
	conf := func(t *testing.T, dir, name string, lines ...string) string {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		name = filepath.Join(dir, name)
		text := fmt.Sprintf("HTTPLOG_DEVICE=lo\nHTTPLOG_PORT=%d\nHTTPLOG_LOG_EVERY=1\n", port) + strings.Join(lines, "\n") + "\n"
		scriptWriteFile(t, name, text, 0o644)
		return name
	}
	noDaemon := func(t *testing.T) {
		t.Helper()
		if pids := scriptPIDsOf(e0.bin); len(pids) != 0 {
			t.Fatalf("processes of %s run: %v", e0.bin, pids)
		}
	}
	get := func(t *testing.T, path string) {
		t.Helper()
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// A script-only variable that is wrong locks nobody out: status,
	// force-reload and stop warn and work; start, restart and configtest
	// refuse it, and restart leaves the daemon running.
	t.Run("bad HTTPLOG_STOP_TIMEOUT", func(t *testing.T) {
		e, dir := env(t, ""), filepath.Join(tmp, "timeout")
		set := []string{"HTTPLOG_DIR=" + filepath.Join(dir, "log"), "HTTPLOG_PIDFILE=" + filepath.Join(dir, "pid")}
		good := conf(t, dir, "good.conf", append(set, "HTTPLOG_STOP_TIMEOUT=10")...)
		bad := conf(t, dir, "bad.conf", append(set, "HTTPLOG_STOP_TIMEOUT=30s")...)
		const complaint = "HTTPLOG_STOP_TIMEOUT=30s is not a whole number of seconds"
		pid := e.startedPID(e.expect(good, "start", 0))
		if r := e.expect(bad, "status", 0); !strings.Contains(r.out, fmt.Sprintf("running (pid %d)", pid)) || !strings.Contains(r.out, "warning: "+bad+": "+complaint) {
			t.Fatalf("status with a bad timeout does not show pid %d and warn %q:\n%s", pid, complaint, r.out)
		}
		for _, action := range []string{"configtest", "restart"} {
			if r := e.expect(bad, action, 6); !strings.Contains(r.out, complaint) {
				t.Fatalf("%s does not say %q:\n%s", action, complaint, r.out)
			}
		}
		if scriptExeOf(pid) != e.bin || scriptReadPIDFile(t, filepath.Join(dir, "pid")) != pid {
			t.Fatalf("a refused restart touched the daemon (pid %d)", pid)
		}
		e.expect(bad, "force-reload", 0)
		if r := e.expect(bad, "stop", 0); !strings.Contains(r.out, "stop waits the default 30 s") {
			t.Fatalf("stop with a bad timeout does not say what it waits:\n%s", r.out)
		}
		if !scriptWaitGone(pid, e.bin, time.Second) {
			t.Fatalf("pid %d still runs after stop", pid)
		}
		e.expect(bad, "start", 6)
		noDaemon(t)
		scriptMustNotExist(t, filepath.Join(dir, "pid"))
	})

	// A value httplog refuses is a bad configuration: configtest and start
	// exit 6 and show httplog's line, before anything is made. configtest
	// of a good one says what would run, and makes nothing either.
	t.Run("configtest", func(t *testing.T) {
		e, dir := env(t, ""), filepath.Join(tmp, "configtest")
		logDir, pidFile := filepath.Join(dir, "log"), filepath.Join(dir, "pid")
		set := []string{"HTTPLOG_DIR=" + logDir, "HTTPLOG_PIDFILE=" + pidFile}
		bad := conf(t, dir, "bad.conf", append(set, "HTTPLOG_CPUNO=two")...)
		const refused = `httplog: invalid value "two" for variable HTTPLOG_CPUNO (for -cpu): not an integer`
		for _, action := range []string{"start", "restart", "configtest"} {
			if r := e.expect(bad, action, 6); !strings.Contains(r.out, refused) {
				t.Fatalf("%s with a bad value does not show %q:\n%s", action, refused, r.out)
			}
		}
		noIf := conf(t, dir, "noif.conf", append(set, "HTTPLOG_DEVICE=nosuchif0")...)
		if r := e.expect(noIf, "configtest", 1); !strings.Contains(r.out, "httplog: -i nosuchif0: no such interface") {
			t.Fatalf("configtest with a missing interface does not name it:\n%s", r.out)
		}
		good := conf(t, dir, "good.conf", set...)
		want := fmt.Sprintf("httplog: configuration OK: interface lo, ring 8 MB, ports %d, snaplen 1560, 1 parser(s), lines to %s/http-YYYYMMDD.log (new directory)\n", port, logDir)
		if r := e.expect(good, "configtest", 0); !strings.HasPrefix(r.out, want) {
			t.Fatalf("configtest prints\n%s\nwant it to begin with\n%s", r.out, want)
		}
		noDaemon(t)
		for _, name := range []string{logDir, pidFile} {
			scriptMustNotExist(t, name)
		}
	})

	// Standard output is refused wherever -d - comes from.
	t.Run("standard output in HTTPLOG_OPTS", func(t *testing.T) {
		e, dir := env(t, ""), filepath.Join(tmp, "stdout")
		c := conf(t, dir, "stdout.conf", "HTTPLOG_DIR="+filepath.Join(dir, "log"), "HTTPLOG_PIDFILE="+filepath.Join(dir, "pid"))
		for _, opts := range []string{"-d -", "--d=-", "-d=-", "-p 80 -d -"} {
			for _, action := range []string{"start", "configtest"} {
				if r := e.expect(c, action, 6, "HTTPLOG_OPTS="+opts); !strings.Contains(r.out, "standard output (-d -, in HTTPLOG_DIR or HTTPLOG_OPTS) cannot be used by a daemon") {
					t.Fatalf("%s with HTTPLOG_OPTS=%q does not refuse standard output:\n%s", action, opts, r.out)
				}
			}
			noDaemon(t)
			scriptMustNotExist(t, filepath.Join(dir, "pid"))
		}
	})

	// Relative paths are the configuration file's, whatever directory the
	// script is run from: HTTPLOG_DIR, HTTPLOG_PIDFILE, and -d in
	// HTTPLOG_OPTS (where status then finds the statistics).
	t.Run("relative paths", func(t *testing.T) {
		dir := filepath.Join(tmp, "relative")
		etc, caller := filepath.Join(dir, "etc"), filepath.Join(dir, "caller")
		if err := os.MkdirAll(caller, 0o755); err != nil {
			t.Fatal(err)
		}
		e, elsewhere := env(t, caller), env(t, dir)
		c := conf(t, etc, "httplog.conf", "HTTPLOG_DIR=log", "HTTPLOG_PIDFILE=httplog.pid", "HTTPLOG_STOP_TIMEOUT=10")
		pid := e.startedPID(e.expect(c, "start", 0))
		if got := scriptReadPIDFile(t, filepath.Join(etc, "httplog.pid")); got != pid {
			t.Fatalf("pid file %s holds %d, start said %d", filepath.Join(etc, "httplog.pid"), got, pid)
		}
		if _, err := os.Stat(filepath.Join(etc, "log", "httplog.messages")); err != nil {
			t.Fatalf("no messages file in the configuration's log directory: %v", err)
		}
		elsewhere.expect(c, "status", 0)
		elsewhere.expect(c, "stop", 0)
		if !scriptWaitGone(pid, e.bin, time.Second) {
			t.Fatalf("pid %d still runs after stop", pid)
		}

		pid = e.startedPID(e.expect(c, "start", 0, "HTTPLOG_OPTS=-d log2"))
		get(t, "/relative-opts")
		var st scriptRun
		if !liveWaitFor(5*time.Second, func() bool {
			st = elsewhere.expect(c, "status", 0, "HTTPLOG_OPTS=-d log2")
			return strings.Contains(st.out, "stats: packets=")
		}) {
			t.Fatalf("status shows no statistics line from %s:\n%s", filepath.Join(etc, "log2"), st.out)
		}
		e.expect(c, "stop", 0, "HTTPLOG_OPTS=-d log2")
		if !scriptWaitGone(pid, e.bin, time.Second) {
			t.Fatalf("pid %d still runs after stop", pid)
		}
		b, err := os.ReadFile(filepath.Join(etc, "log2", "http-"+time.Now().Format("20060102")+".log"))
		if err != nil || !strings.Contains(string(b), " CQ GET /relative-opts HTTP/1.1 ") {
			t.Fatalf("no line of the request in %s (%v):\n%s", filepath.Join(etc, "log2"), err, b)
		}
		if ents, _ := os.ReadDir(caller); len(ents) != 0 {
			t.Fatalf("the script made files in its caller's directory: %v", ents)
		}
	})
}
