package main

// The tests of start_httplog.sh's configuration (script_test.go has the
// environment): a bad configuration is refused before anything starts
// (exit 6, with httplog -check's message), it never keeps stop and status
// from working, and relative paths do not depend on the caller.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStartScriptBadStopTimeout: a script-only variable that is wrong
// locks nobody out: status, force-reload and stop warn and work; start,
// restart and configtest refuse it, and restart leaves the daemon
// running.
func TestStartScriptBadStopTimeout(t *testing.T) {
	e := newScriptEnv(t)
	dir := filepath.Join(e.tmp, "timeout")
	set := []string{"HTTPLOG_DIR=" + filepath.Join(dir, "log"), "HTTPLOG_PIDFILE=" + filepath.Join(dir, "pid")}
	good := e.loConf(filepath.Join(dir, "good.conf"), append(set, "HTTPLOG_STOP_TIMEOUT=10")...)
	bad := e.loConf(filepath.Join(dir, "bad.conf"), append(set, "HTTPLOG_STOP_TIMEOUT=30s")...)
	const complaint = "HTTPLOG_STOP_TIMEOUT=30s is not a whole number of seconds"
	pid := e.start(good, "start")
	if r := e.expect(bad, "status", 0); !strings.Contains(r.out, fmt.Sprintf("running (pid %d)", pid)) || !strings.Contains(r.out, "warning: "+bad+": "+complaint) {
		t.Fatalf("status with a bad timeout does not show pid %d and warn %q:\n%s", pid, complaint, r.out)
	}
	for _, action := range []string{"configtest", "restart"} {
		if r := e.expect(bad, action, 6); !strings.Contains(r.out, complaint) {
			t.Fatalf("%s does not say %q:\n%s", action, complaint, r.out)
		}
	}
	if scriptExeOf(pid) != e.bin {
		t.Fatalf("a refused restart touched the daemon (pid %d)", pid)
	}
	pidFileHolds(t, filepath.Join(dir, "pid"), pid)
	e.expect(bad, "force-reload", 0)
	if r := e.stop(bad, pid, e.bin); !strings.Contains(r.out, "stop waits the default 30 s") {
		t.Fatalf("stop with a bad timeout does not say what it waits:\n%s", r.out)
	}
	e.expect(bad, "start", 6)
	e.noDaemon(filepath.Join(dir, "pid"))
}

// TestStartScriptConfigtest: a value httplog refuses is a bad
// configuration: configtest and start exit 6 and show httplog's line,
// before anything is made. configtest of a good one says what would run,
// and makes nothing either.
func TestStartScriptConfigtest(t *testing.T) {
	e := newScriptEnv(t)
	dir := filepath.Join(e.tmp, "configtest")
	logDir, pidFile := filepath.Join(dir, "log"), filepath.Join(dir, "pid")
	set := []string{"HTTPLOG_DIR=" + logDir, "HTTPLOG_PIDFILE=" + pidFile}
	bad := e.loConf(filepath.Join(dir, "bad.conf"), append(set, "HTTPLOG_CPUNO=two")...)
	const refused = `httplog: invalid value "two" for variable HTTPLOG_CPUNO (for -cpu): not an integer`
	for _, action := range []string{"start", "restart", "configtest"} {
		if r := e.expect(bad, action, 6); !strings.Contains(r.out, refused) {
			t.Fatalf("%s with a bad value does not show %q:\n%s", action, refused, r.out)
		}
	}
	noIf := e.loConf(filepath.Join(dir, "noif.conf"), append(set, "HTTPLOG_DEVICE=nosuchif0")...)
	if r := e.expect(noIf, "configtest", 1); !strings.Contains(r.out, "httplog: -i nosuchif0: no such interface") {
		t.Fatalf("configtest with a missing interface does not name it:\n%s", r.out)
	}
	good := e.loConf(filepath.Join(dir, "good.conf"), set...)
	want := fmt.Sprintf("httplog: configuration OK: interface lo, ring 8 MB, ports %d, snaplen 1560, 1 parser(s), lines to %s/http-YYYYMMDD.log (new directory)\n", e.port, logDir)
	if r := e.expect(good, "configtest", 0); !strings.HasPrefix(r.out, want) {
		t.Fatalf("configtest prints\n%s\nwant it to begin with\n%s", r.out, want)
	}
	e.noDaemon(logDir, pidFile)
}

// TestStartScriptRefusesStdout: standard output is refused wherever -d -
// comes from.
func TestStartScriptRefusesStdout(t *testing.T) {
	e := newScriptEnv(t)
	dir := filepath.Join(e.tmp, "stdout")
	c := e.loConf(filepath.Join(dir, "stdout.conf"), "HTTPLOG_DIR="+filepath.Join(dir, "log"), "HTTPLOG_PIDFILE="+filepath.Join(dir, "pid"))
	for _, opts := range []string{"-d -", "--d=-", "-d=-", "-p 80 -d -"} {
		for _, action := range []string{"start", "configtest"} {
			if r := e.expect(c, action, 6, "HTTPLOG_OPTS="+opts); !strings.Contains(r.out, "standard output (-d -, in HTTPLOG_DIR or HTTPLOG_OPTS) cannot be used by a daemon") {
				t.Fatalf("%s with HTTPLOG_OPTS=%q does not refuse standard output:\n%s", action, opts, r.out)
			}
		}
		e.noDaemon(filepath.Join(dir, "pid"))
	}
}

// TestStartScriptRelativePaths: relative paths are the configuration
// file's, whatever directory the script is run from: HTTPLOG_DIR,
// HTTPLOG_PIDFILE, and -d in HTTPLOG_OPTS (where status then finds the
// statistics).
func TestStartScriptRelativePaths(t *testing.T) {
	e := newScriptEnv(t)
	dir := filepath.Join(e.tmp, "relative")
	etc, caller := filepath.Join(dir, "etc"), filepath.Join(dir, "caller")
	c := e.loConf(filepath.Join(etc, "httplog.conf"), "HTTPLOG_DIR=log", "HTTPLOG_PIDFILE=httplog.pid", "HTTPLOG_STOP_TIMEOUT=10")
	if err := os.MkdirAll(caller, 0o755); err != nil {
		t.Fatal(err)
	}
	e.dir = caller
	elsewhere := *e
	elsewhere.dir = dir
	pid := e.start(c, "start")
	pidFileHolds(t, filepath.Join(etc, "httplog.pid"), pid)
	if _, err := os.Stat(filepath.Join(etc, "log", "httplog.messages")); err != nil {
		t.Fatalf("no messages file in the configuration's log directory: %v", err)
	}
	elsewhere.expect(c, "status", 0)
	elsewhere.stop(c, pid, e.bin)

	opts := "HTTPLOG_OPTS=-d log2"
	pid = e.start(c, "start", opts)
	e.get("/relative-opts", "")
	var st scriptRun
	if !waitFor(5*time.Second, func() bool {
		st = elsewhere.expect(c, "status", 0, opts)
		return strings.Contains(st.out, "stats: packets=")
	}) {
		t.Fatalf("status shows no statistics line from %s:\n%s", filepath.Join(etc, "log2"), st.out)
	}
	e.stop(c, pid, e.bin, opts)
	n := 0
	for _, l := range readLogDir(t, filepath.Join(etc, "log2"), "httplog.messages") {
		if l.typ == "CQ" && strings.HasPrefix(l.msg, "GET /relative-opts HTTP/1.1 ") {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no line of the request in %s", filepath.Join(etc, "log2"))
	}
	if ents, _ := os.ReadDir(caller); len(ents) != 0 {
		t.Fatalf("the script made files in its caller's directory: %v", ents)
	}
}

// TestStartScriptRestartWithMetrics: with HTTPLOG_METRICS set, configtest
// and restart succeed while the daemon runs and holds the address (the
// check before the stop must not find it taken), and the new daemon
// serves /metrics on it.
func TestStartScriptRestartWithMetrics(t *testing.T) {
	e := newScriptEnv(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := e.loConf(filepath.Join(e.tmp, "metrics.conf"), "HTTPLOG_DIR="+e.logDir, "HTTPLOG_PIDFILE="+e.pidFile,
		"HTTPLOG_STOP_TIMEOUT=10", "HTTPLOG_METRICS="+addr)
	pid := e.start(conf, "start")
	e.expect(conf, "configtest", 0)
	pid2 := e.start(conf, "restart")
	if pid2 == pid {
		t.Fatalf("restart kept pid %d", pid)
	}
	e.only(pid2)
	client := &http.Client{Timeout: 5 * time.Second}
	var body []byte
	if !waitFor(5*time.Second, func() bool {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("no /metrics on %s after restart", addr)
	}
	if !bytes.Contains(body, []byte("httplog_packets_total")) {
		t.Fatalf("/metrics of the restarted daemon has no httplog_packets_total:\n%.500s", body)
	}
	e.stop(conf, pid2, e.bin)
}
