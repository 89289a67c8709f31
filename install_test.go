package main

// TestInstall runs "./make.sh install DESTDIR" and "./make.sh uninstall
// DESTDIR" for real, as root, into a temporary directory, and checks what
// they write: every file's mode and content, the systemd unit with
// systemd-analyze verify, the logrotate file with logrotate (its debug
// mode, then a real run on days of a test directory), the manual page with
// man and groff, and the start script as installed, starting httplog as
// user httplog on lo and stopping it.

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// installed are the files install writes, by path under DESTDIR, with
// their mode and where their content comes from ("" : made by the test).
var installed = []struct {
	path string
	mode fs.FileMode
	from string
}{
	{"usr/local/sbin/httplog", 0o755, ""},
	{"usr/local/sbin/start_httplog.sh", 0o755, "start_httplog.sh"},
	{"usr/local/lib/systemd/system/httplog.service", 0o644, "dist/httplog.service"},
	{"etc/logrotate.d/httplog", 0o644, "dist/httplog.logrotate"},
	{"usr/local/share/man/man8/httplog.8", 0o644, "dist/httplog.8"},
	{"etc/sysconfig/httplog", 0o644, ""},
}

// makeSh runs ./make.sh with args and HTTPLOG_BIN=bin, and returns its
// output; it fails the test unless the exit code is 0.
func makeSh(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"make.sh"}, args...)...)
	cmd.Env = append(testEnv(), "HTTPLOG_BIN="+bin)
	out, err := cmd.CombinedOutput()
	t.Logf("make.sh %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("make.sh %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// httplogAccount is the user httplog, made for the test (and deleted
// after it) when this machine has none.
func httplogAccount(t *testing.T) *account {
	t.Helper()
	if a, err := lookupAccount("httplog"); err == nil {
		return a
	}
	useradd := tool(t, "useradd")
	out, err := exec.Command(useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", "httplog").CombinedOutput()
	if err != nil {
		t.Fatalf("useradd httplog: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(filepath.Join(filepath.Dir(useradd), "userdel"), "httplog").Run() })
	a, err := lookupAccount("httplog")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestInstall(t *testing.T) {
	requireRoot(t, "installing under a DESTDIR as root, and a user httplog")
	for _, name := range []string{"systemd-analyze", "logrotate", "man", "groff"} {
		tool(t, name)
	}
	user := httplogAccount(t)
	bin := httplogBinary(t)
	dest := t.TempDir()
	out := makeSh(t, bin, "install", dest)
	if !strings.Contains(out, "DESTDIR is set: the user httplog is not made") {
		t.Errorf("install into a DESTDIR does not say that it skips the user")
	}
	conf := strings.Replace(readFile(t, "httplog.conf"), "\nHTTPLOG_USER=\n", "\nHTTPLOG_USER=httplog\n", 1)
	if !strings.Contains(conf, "\nHTTPLOG_USER=httplog\n") {
		t.Fatal("httplog.conf has no empty HTTPLOG_USER= line")
	}
	installCheckFiles(t, dest, bin, conf)

	// A configuration of the operator's is never overwritten.
	sysconf := filepath.Join(dest, "etc/sysconfig/httplog")
	mine := conf + "HTTPLOG_PORT=8080 # mine\n"
	writeFile(t, sysconf, mine, 0o644)
	if out := makeSh(t, bin, "install", dest); !strings.Contains(out, "kept /etc/sysconfig/httplog") {
		t.Errorf("a second install does not say that it kept the configuration")
	}
	if readFile(t, sysconf) != mine {
		t.Errorf("a second install overwrote /etc/sysconfig/httplog")
	}

	t.Run("systemd unit", func(t *testing.T) { installCheckUnit(t, dest) })
	t.Run("logrotate", func(t *testing.T) { installCheckLogrotate(t, dest, user) })
	t.Run("manual page", func(t *testing.T) { installCheckManPage(t, dest, bin) })
	t.Run("start script as httplog", func(t *testing.T) { installRunScript(t, dest, user) })

	// uninstall: everything but the logs, and the configuration changed.
	out = makeSh(t, bin, "uninstall", dest)
	if !strings.Contains(out, "kept /etc/sysconfig/httplog: it was changed since install") {
		t.Errorf("uninstall does not say that it kept the changed configuration")
	}
	for _, f := range installed {
		_, err := os.Stat(filepath.Join(dest, f.path))
		if kept := f.path == "etc/sysconfig/httplog"; kept != (err == nil) {
			t.Errorf("after uninstall, %s: %v (want it kept: %v)", f.path, err, kept)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "log/httplog")); err != nil {
		t.Errorf("uninstall removed the log directory: %v", err)
	}
	// An unchanged configuration goes with the rest.
	writeFile(t, sysconf, conf, 0o644)
	if out := makeSh(t, bin, "uninstall", dest); !strings.Contains(out, "removed /etc/sysconfig/httplog (unchanged since install)") {
		t.Errorf("uninstall does not say that it removed the unchanged configuration")
	}
	if _, err := os.Stat(sysconf); err == nil {
		t.Errorf("uninstall kept an unchanged /etc/sysconfig/httplog")
	}
}

// installCheckFiles checks what install wrote under dest: the files of
// installed, each with its mode and content (the binary bin, conf for the
// configuration), nothing else, and the log directories with their modes.
func installCheckFiles(t *testing.T, dest, bin, conf string) {
	t.Helper()
	var want []string
	for _, f := range installed {
		name := filepath.Join(dest, f.path)
		want = append(want, name)
		fi, err := os.Stat(name)
		if err != nil {
			t.Errorf("install did not write %s: %v", f.path, err)
			continue
		}
		if fi.Mode() != f.mode {
			t.Errorf("%s has mode %v, want %v", f.path, fi.Mode(), f.mode)
		}
		content := conf
		switch {
		case f.from != "":
			content = readFile(t, f.from)
		case strings.HasSuffix(f.path, "/httplog") && strings.HasPrefix(f.path, "usr/"):
			content = readFile(t, bin)
		}
		if readFile(t, name) != content {
			t.Errorf("%s is not what it should be (from %q)", f.path, f.from)
		}
	}
	var files []string
	filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	sort.Strings(files)
	sort.Strings(want)
	if strings.Join(files, "\n") != strings.Join(want, "\n") {
		t.Errorf("install wrote\n%s\nwant\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}
	for dir, mode := range map[string]fs.FileMode{"log": 0o755, "log/httplog": 0o750} {
		if fi, err := os.Stat(filepath.Join(dest, dir)); err != nil || fi.Mode() != fs.ModeDir|mode {
			t.Errorf("/%s: %v, %v; want a directory of mode %v", dir, fi.Mode(), err, mode)
		}
	}
}

// installCheckUnit: systemd-analyze verify accepts the unit as installed,
// its ExecStart pointed at the binary under DESTDIR (verify checks that
// it is executable) and its man: link found in DESTDIR's manual pages.
func installCheckUnit(t *testing.T, dest string) {
	unit := readFile(t, filepath.Join(dest, "usr/local/lib/systemd/system/httplog.service"))
	for _, want := range []string{"\nEnvironmentFile=-/etc/sysconfig/httplog\n", "\nExecStart=/usr/local/sbin/httplog -u httplog $HTTPLOG_OPTS\n",
		"\nNoNewPrivileges=yes\n", "\nProtectSystem=strict\n", "\nReadWritePaths=-/log/httplog\n", "\nRestart=on-failure\n",
		"\nCapabilityBoundingSet=CAP_NET_RAW CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit has no line %q", strings.TrimSpace(want))
		}
	}
	dir := t.TempDir()
	check := filepath.Join(dir, "httplog.service")
	writeFile(t, check, strings.ReplaceAll(unit, "=/usr/local/sbin/", "="+dest+"/usr/local/sbin/"), 0o644)
	cmd := exec.Command(tool(t, "systemd-analyze"), "verify", check)
	cmd.Env = append(testEnv(), "MANPATH="+filepath.Join(dest, "usr/local/share/man"))
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// It does find faults: a unit naming a binary that is not there.
	writeFile(t, check, strings.ReplaceAll(unit, "=/usr/local/sbin/", "="+dir+"/nowhere/"), 0o644)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("systemd-analyze verify accepts a unit without its binary:\n%s", out)
	}
}

// installCheckLogrotate: logrotate -d accepts the file as installed; then
// the file, pointed at a directory of the test's, compresses a day two
// days after its last line, deletes a compressed day 30 days after, and
// leaves today's file and younger days alone; text and JSON files alike.
// It is long because it sets up days of files and checks each after a real rotation.
func installCheckLogrotate(t *testing.T, dest string, user *account) {
	logrotate := tool(t, "logrotate")
	conf := filepath.Join(dest, "etc/logrotate.d/httplog")
	state := filepath.Join(t.TempDir(), "state")
	out, err := exec.Command(logrotate, "-d", "-s", state, conf).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("error")) {
		t.Errorf("logrotate -d %s: %v\n%s", conf, err, out)
	}

	dir := filepath.Join(openTempDir(t), "log")
	os.Mkdir(dir, 0o750)
	os.Chown(dir, user.uid, user.gid)
	now := time.Now()
	files := map[string]time.Time{
		"http-" + now.Format("20060102") + ".log":                   now,
		"http-" + now.AddDate(0, 0, -1).Format("20060102") + ".log": now.AddDate(0, 0, -1),
		"http-CQ-20300101.log":                                      now.AddDate(0, 0, -3), // two days without a line
		"http-20300102.log.1.gz":                                    now.AddDate(0, 0, -40),
		"http-20300103.log.1.gz":                                    now.AddDate(0, 0, -5),
		"http-SR-20300104.json":                                     now.AddDate(0, 0, -3), // -format json's
		"http-20300105.json.1.gz":                                   now.AddDate(0, 0, -40),
	}
	seen := "logrotate state -- version 2\n"
	for name, at := range files {
		p := filepath.Join(dir, name)
		writeFile(t, p, name+"\n", 0o644)
		os.Chmod(p, 0o640)
		os.Chown(p, user.uid, user.gid)
		os.Chtimes(p, at, at)
		seen += fmt.Sprintf("%q 2000-1-1-0:0:0\n", p) // seen long ago: "daily" is due
	}
	writeFile(t, state, seen, 0o644)
	test := tempFile(t, "httplog", strings.ReplaceAll(readFile(t, conf), "/log/httplog/", dir+"/"))
	if out, err := exec.Command(logrotate, "-s", state, test).CombinedOutput(); err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	want := map[string]string{}
	for name := range files {
		want[name] = name + "\n"
	}
	delete(want, "http-20300102.log.1.gz")
	delete(want, "http-CQ-20300101.log")
	want["http-CQ-20300101.log.1.gz"] = "http-CQ-20300101.log\n" // compressed
	delete(want, "http-20300105.json.1.gz")
	delete(want, "http-SR-20300104.json")
	want["http-SR-20300104.json.1.gz"] = "http-SR-20300104.json\n"
	got := map[string]string{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b := []byte(readFile(t, filepath.Join(dir, e.Name())))
		if strings.HasSuffix(e.Name(), ".1.gz") && e.Name() != "http-20300103.log.1.gz" {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			b, _ = io.ReadAll(zr)
		}
		got[e.Name()] = string(b)
		checkOwner(t, filepath.Join(dir, e.Name()), user, 0)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after logrotate the directory holds\n%v\nwant\n%v", got, want)
	}
}

// installCheckManPage: the page renders without a warning, and names
// every flag of httplog -h and every HTTPLOG_* variable of httplog.conf.
func installCheckManPage(t *testing.T, dest, bin string) {
	page := filepath.Join(dest, "usr/local/share/man/man8/httplog.8")
	cmd := exec.Command("bash", "-c", `MANWIDTH=80 "$0" --warnings -l "$1" 2>&1 >/dev/null`, tool(t, "man"), page)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("man --warnings -l httplog.8: %v\n%s", err, out)
	}
	if out, err := exec.Command(tool(t, "groff"), "-man", "-ww", "-z", page).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("groff -man -ww -z httplog.8: %v\n%s", err, out)
	}
	text := readFile(t, page)
	usage, _ := exec.Command(bin, "-h").CombinedOutput()
	flags := regexp.MustCompile(`(?m)^  -(\w+)`).FindAllStringSubmatch(string(usage), -1)
	if len(flags) < 15 {
		t.Fatalf("httplog -h lists %d flags:\n%s", len(flags), usage)
	}
	for _, f := range flags {
		if !regexp.MustCompile(`\\-` + f[1] + `\b`).MatchString(text) {
			t.Errorf("the manual page does not describe -%s", f[1])
		}
	}
	for _, v := range regexp.MustCompile(`HTTPLOG_[A-Z_]+`).FindAllString(readFile(t, "httplog.conf"), -1) {
		if !strings.Contains(text, v) {
			t.Errorf("the manual page does not name %s", v)
		}
	}
}

// installRunScript: the start script as installed, with the installed
// configuration (HTTPLOG_USER=httplog) and the test's interface, port and
// directories, starts httplog as user httplog, reports its status, stops
// it, and the lines are written, in files of user httplog's.
func installRunScript(t *testing.T, dest string, user *account) {
	// A directory every user may enter: httplog writes as user httplog.
	e := scriptEnvFor(t, openTempDir(t), filepath.Join(dest, "usr/local/sbin/start_httplog.sh"), filepath.Join(dest, "usr/local/sbin/httplog"))
	conf := e.writeConf(filepath.Join(e.tmp, "httplog"), readFile(t, filepath.Join(dest, "etc/sysconfig/httplog"))+fmt.Sprintf(
		"HTTPLOG_DEVICE=lo\nHTTPLOG_PORT=%d\nHTTPLOG_DIR=%s\nHTTPLOG_PIDFILE=%s\nHTTPLOG_LOG_EVERY=1\nHTTPLOG_STOP_TIMEOUT=10\n",
		e.port, e.logDir, e.pidFile))
	pid := e.start(conf, "start")
	checkProcessUser(t, pid, user)
	e.get("/installed", "")
	day := filepath.Join(e.logDir, todayFile())
	waitForLines(t, day, fmt.Sprintf("127.0.0.1#%d CQ GET /installed HTTP/1.1 127.0.0.1:%d Go-http-client/1.1", e.port, e.port))
	if st := e.expect(conf, "status", 0); !strings.Contains(st.out, fmt.Sprintf("running (pid %d)", pid)) || !strings.Contains(st.out, "stats: packets=") {
		t.Errorf("status does not show pid %d and a statistics line:\n%s", pid, st.out)
	}
	e.stop(conf, pid, e.bin)
	e.expect(conf, "status", 3)
	msgs := readFile(t, e.messages)
	if !strings.Contains(msgs, ", as "+user.String()) {
		t.Errorf("the start message does not say that httplog runs as %s:\n%s", user, msgs)
	}
	checkOwner(t, e.logDir, user, 0o750)
	checkOwner(t, day, user, 0o640)
}
