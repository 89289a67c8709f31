package main

// Faults, run against the real binary: a full disk, a logrotate-style
// rename with SIGHUP, errors before capture (not root, unwritable
// directory, bad variable), and a capture crossing local midnight. Packets
// come through a pipe (-r -, startPiped), so the daemon runs as long as
// the test wants without any network.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
)

// checkNumbered checks that files hold the requests 0…n-1 of
// pipedHttplog.send, each once, in order across the files as given,
// every line whole.
func checkNumbered(t *testing.T, n int, files ...string) {
	t.Helper()
	next := 0
	for _, f := range files {
		text := readFile(t, f)
		if text != "" && !strings.HasSuffix(text, "\n") {
			t.Errorf("%s ends inside a line", f)
		}
		for _, l := range parseLogText(t, filepath.Base(f), text) {
			want := fmt.Sprintf("GET /%06d HTTP/1.1 h -", next)
			if l.typ != "CQ" || l.msg != want {
				t.Fatalf("%s: %q where the CQ line %q was due", l.file, l.rest, want)
			}
			next++
		}
	}
	if next != n {
		t.Errorf("%d requests in the files, want %d", next, n)
	}
}

// todayFile is the name of today's log file.
func todayFile() string { return logFileName("", time.Now()) }

// TestFaultDiskFull: on a full tmpfs, lines are held and the error is
// reported and counted; when space returns, writing resumes and no line is
// lost or cut.
func TestFaultDiskFull(t *testing.T) {
	dir, filler := fullTmpfs(t)
	d := startPiped(t, "-d", dir, "-log_every", "1")
	d.send(t, 300)
	if !d.stderr.waitText("no space left on device", 5*time.Second) {
		t.Fatalf("no write error reported:\n%s", d.stderr.String())
	}
	d.send(t, 200) // while the disk is full
	// The disk stays full until the writer holds these lines too and has
	// failed to write them once more (it retries every second).
	var held uint64
	if !d.sendUntil(t, 10*time.Second, func(stats map[string]uint64) bool {
		if held == 0 && stats["CQ"] >= 500 {
			held = stats["write_errors"]
		}
		return held > 0 && stats["write_errors"] > held
	}) {
		t.Fatalf("the writer did not try again with the lines held:\n%s", lastStatsLine(d.stderr.String()))
	}
	t.Logf("%d requests sent, the disk full: %s", d.sent, lastStatsLine(d.stderr.String()))
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if !d.stderr.waitText("again", 5*time.Second) {
		t.Fatalf("writing did not resume:\n%s", d.stderr.String())
	}
	d.send(t, 100)
	stderr := d.finish(t)
	checkNumbered(t, d.sent, filepath.Join(dir, todayFile()))
	if stats := parseStats(t, stderr); stats["lines_lost"] != 0 || stats["write_errors"] == 0 {
		t.Errorf("statistics: want write errors counted and no line lost: %s", lastStatsLine(stderr))
	}
}

// TestFaultRotate: a logrotate-style rename then SIGHUP: old lines stay in
// the renamed file, new ones go to a fresh file, none lost.
func TestFaultRotate(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, todayFile())
	d := startPiped(t, "-d", dir)
	d.send(t, 50)
	if waitLogLines(dir, 50, 5*time.Second) < 50 {
		t.Fatalf("the first lines were not flushed within a second or so")
	}
	if err := os.Rename(name, name+".1"); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	if !d.stderr.waitText("SIGHUP", 5*time.Second) {
		t.Fatalf("SIGHUP not acknowledged:\n%s", d.stderr.String())
	}
	d.send(t, 50)
	d.finish(t)
	checkNumbered(t, 100, name+".1", name)
}

// TestFaultStartErrors: failures before any capture, as users meet them:
// one line naming the cause, and a non-zero exit. (Long for its table:
// one row a failure.)
func TestFaultStartErrors(t *testing.T) {
	requireRoot(t, "running httplog as user nobody")
	// A copy of the binary that user nobody can run.
	shared, err := os.MkdirTemp("", "httplog-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	bin := copyHttplog(t, shared)
	writeFile(t, filepath.Join(shared, "seed.pcap"), readFile(t, filepath.Join("testdata", "seed.pcap")), 0o644)
	writable := filepath.Join(shared, "logs")
	os.Mkdir(writable, 0o777)
	os.Chmod(writable, 0o777)
	os.Chmod(shared, 0o755)
	rootOnly := filepath.Join(shared, "root-only")
	os.Mkdir(rootOnly, 0o755)
	private := filepath.Join(shared, "private") // nobody cannot enter it
	os.Mkdir(private, 0o700)
	seed := filepath.Join(shared, "seed.pcap")

	tests := []struct {
		name   string
		nobody bool
		env    []string
		args   []string
		code   int
		want   string
	}{
		{"not root", true, nil, []string{"-i", "lo", "-d", writable}, 1, "httplog: -i lo: capturing needs root (CAP_NET_RAW): operation not permitted"},
		{"unwritable directory", true, nil, []string{"-r", filepath.Join(shared, "seed.pcap"), "-d", rootOnly}, 1, "httplog: -d " + rootOnly + ": directory is not writable: permission denied"},
		{"directory that cannot be made", true, nil, []string{"-r", filepath.Join(shared, "seed.pcap"), "-d", rootOnly + "/logs"}, 1,
			"httplog: -d " + rootOnly + "/logs: cannot be created: " + rootOnly + " is not writable: permission denied"},
		{"no such interface", false, nil, []string{"-i", "nosuchif0", "-d", writable}, 1, "httplog: -i nosuchif0: no such interface"},
		{"bad variable", false, []string{"HTTPLOG_SNAPLEN=big"}, nil, 2, `httplog: invalid value "big" for variable HTTPLOG_SNAPLEN (for -s): not an integer`},
		{"bad flag", false, nil, []string{"-p", "80,http"}, 2, `httplog: invalid value "80,http" for flag -p: "http" is not a port (1-65535) or any`},
		// -u: checked when the configuration is read, then as the user.
		{"no such user", false, nil, []string{"-r", seed, "-d", writable, "-u", "no-such-user-hl"}, 2, `httplog: invalid value "no-such-user-hl" for flag -u: no such user`},
		{"no such user (variable)", false, []string{"HTTPLOG_USER=no-such-user-hl"}, []string{"-r", seed, "-d", writable}, 2,
			`httplog: invalid value "no-such-user-hl" for variable HTTPLOG_USER (for -u): no such user`},
		{"-u root", false, nil, []string{"-r", seed, "-d", "-", "-u", "root"}, 2, `httplog: invalid value "root" for flag -u: that is root: -u names the user httplog runs as instead of root`},
		{"-u without root", true, nil, []string{"-r", seed, "-d", writable, "-u", "nobody"}, 1, "httplog: -u nobody: changing the user needs root (httplog runs as uid 65534)"},
		{"directory the user cannot reach", false, nil, []string{"-r", seed, "-d", private + "/logs", "-u", "nobody"}, 1,
			"httplog: -d " + private + "/logs: user nobody cannot write into it: permission denied"},
	}
	for _, tt := range tests {
		// -check finds each of them as the start does, with its message
		// and exit code.
		for _, check := range []bool{false, true} {
			name, args := tt.name, tt.args
			if check {
				name, args = tt.name+" -check", append([]string{"-check"}, tt.args...)
			}
			t.Run(name, func(t *testing.T) {
				cmd := exec.Command(bin, args...)
				cmd.Env = append(testEnv(), tt.env...)
				if tt.nobody {
					cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
				}
				stdout, stderr, code := runCmd(t, cmd)
				if code != tt.code || stderr != tt.want+"\n" || stdout != "" {
					t.Errorf("exit %d, stderr %q\nwant exit %d, %q", code, stderr, tt.code, tt.want)
				}
			})
		}
	}
}

// TestFaultMidnight: with TZ set, a capture crossing local midnight puts
// each line in its own day's file.
func TestFaultMidnight(t *testing.T) {
	if _, err := time.LoadLocation("Asia/Seoul"); err != nil {
		t.Skip("no time zone database on this machine:", err)
	}
	midnight := time.Date(2019, 9, 1, 15, 0, 0, 0, time.UTC) // 00:00 in Seoul (UTC+9)
	frames := [][]byte{
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, "GET /before HTTP/1.1\r\n\r\n"),
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40001, 80, "GET /after HTTP/1.1\r\n\r\n"),
		ipv4HTTP("192.0.2.1", "198.51.100.2", 40002, 80, "GET /late HTTP/1.1\r\n\r\n"),
	}
	at := []time.Time{midnight.Add(-time.Millisecond), midnight, midnight.Add(-2 * time.Millisecond)}
	path := writePcapAt(t, layers.LinkTypeEthernet, frames, func(i int) time.Time { return at[i] })
	dir := t.TempDir()
	if out, errOut, code := runHttplog(t, []string{"TZ=Asia/Seoul"}, "-r", path, "-d", dir); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	want := map[string]string{
		"http-20190901.log": "2019-09-01 23:59:59.999 192.0.2.1#40000 198.51.100.2#80 CQ GET /before HTTP/1.1 - -\n" +
			"2019-09-01 23:59:59.998 192.0.2.1#40002 198.51.100.2#80 CQ GET /late HTTP/1.1 - -\n",
		"http-20190902.log": "2019-09-02 00:00:00.000 192.0.2.1#40001 198.51.100.2#80 CQ GET /after HTTP/1.1 - -\n",
	}
	for name, w := range want {
		if got := readFile(t, filepath.Join(dir, name)); got != w {
			t.Errorf("%s:\n got %q\nwant %q", name, got, w)
		}
	}
}

// fullTmpfs mounts a 256 KiB tmpfs on a temporary directory and fills it
// with one file; it returns the directory and the file.
func fullTmpfs(t *testing.T) (string, string) {
	t.Helper()
	requireRoot(t, "mounting a small tmpfs to fill up")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0750", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	filler := filepath.Join(dir, "filler")
	f, _ := os.Create(filler)
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break // the disk is full
		}
	}
	f.Close()
	return dir, filler
}

// TestFaultDiskFullAtExit: a -r run whose disk stays full to the end
// exits 1 after its statistics line; its file ends with a whole line (the
// head of the line the disk cut is cut back), and the next run, with
// space again, goes on from a line of its own.
func TestFaultDiskFullAtExit(t *testing.T) {
	dir, filler := fullTmpfs(t)
	name := filepath.Join(dir, todayFile())
	d := startPiped(t, "-d", dir)
	if !d.stderr.waitText("started", 5*time.Second) {
		t.Fatalf("no start:\n%s", d.stderr.String())
	}
	// One page free: the first write of the lines stops inside a line
	// (4096 is not a multiple of their length).
	st, err := os.Stat(filler)
	if err == nil {
		err = os.Truncate(filler, st.Size()-4096)
	}
	if err != nil {
		t.Fatal(err)
	}
	d.send(t, 300)
	code, stderr := d.end(t)
	written := strings.Count(readFile(t, name), "\n")
	if code != 1 || written == 0 || parseStats(t, stderr)["lines_lost"] != uint64(300-written) || !strings.Contains(stderr, "cut back the ") {
		t.Errorf("exit %d, %d lines written; want exit 1 and the others lost, a cut said:\n%s", code, written, stderr)
	}
	checkNumbered(t, written, name)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	d = startPiped(t, "-d", dir)
	d.sent = written
	d.send(t, 100)
	d.finish(t)
	checkNumbered(t, written+100, name)
}

// TestFaultSecondInstance: a second httplog on the directory of a
// running one is refused before it reads a packet, with one line naming
// -d and the pid of the one running; that one's lines are written once.
func TestFaultSecondInstance(t *testing.T) {
	dir := t.TempDir()
	d := startPiped(t, "-d", dir)
	if !d.stderr.waitText("started", 5*time.Second) {
		t.Fatalf("no start:\n%s", d.stderr.String())
	}
	out, errOut, code := runHttplog(t, nil, "-r", filepath.Join("testdata", "seed.pcap"), "-d", dir)
	want := fmt.Sprintf("httplog: -d %s: another httplog is writing into this directory (pid %d holds %s)\n",
		dir, d.cmd.Process.Pid, filepath.Join(dir, ".httplog.lock"))
	if code != 1 || out+errOut != want {
		t.Errorf("second start: exit %d, output %q\nwant exit 1, %q", code, out+errOut, want)
	}
	d.send(t, 20)
	d.finish(t)
	checkNumbered(t, 20, filepath.Join(dir, todayFile()))
	if _, err := os.Stat(filepath.Join(dir, "http-20190901.log")); err == nil {
		t.Error("the refused start wrote the seed's lines")
	}
}

// TestFaultDirRemovedUnderLoad: the log directory removed while lines
// pour in: every line written after the removal is in the new file (the
// removal is seen at the next write, not at the next second), none lost
// or doubled.
func TestFaultDirRemovedUnderLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	name := filepath.Join(dir, todayFile())
	d := startPiped(t, "-d", dir)
	d.send(t, 50)
	if waitLogLines(dir, 50, 5*time.Second) < 50 {
		t.Fatalf("the first lines were not flushed within a second or so")
	}
	before := filepath.Join(t.TempDir(), "before.log") // a copy: a link would keep the file's name
	writeFile(t, before, readFile(t, name), 0o640)
	removeLogDir(t, dir)
	d.send(t, 20000) // about 1.5 MB of lines: several 256 KiB writes before the next tick
	stderr := d.finish(t)
	checkNumbered(t, 20050, before, name)
	if parseStats(t, stderr)["lines_lost"] != 0 {
		t.Errorf("statistics:\n%s", stderr)
	}
}
