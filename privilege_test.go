package main

// Least privilege (-u): the user lookup, the hand-over of the log
// directory and the checks as unit tests; as root, the binary switching
// to a user made for the test while it captures live in a namespace,
// writes, reopens on SIGHUP, follows a removed directory, a day change and
// the interface going down and up.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
)

func TestLookupAccount(t *testing.T) {
	for _, tt := range []struct{ name, err string }{
		{"no-such-user-hl", "no such user"},
		{"root", "that is root: -u names the user httplog runs as instead of root"},
	} {
		if _, err := lookupAccount(tt.name); err == nil || err.Error() != tt.err {
			t.Errorf("lookupAccount(%q): %v, want %q", tt.name, err, tt.err)
		}
	}
	a, err := lookupAccount("nobody")
	if err != nil {
		t.Skip("no user nobody here:", err)
	}
	if a.uid == 0 || !slices.Contains(a.groups, a.gid) || !slices.IsSorted(a.groups) {
		t.Errorf("nobody: %+v, want a uid other than 0 and its primary group among its sorted groups", a)
	}
	cfg, err := loadConfig([]string{"-u", "no-such-user-hl"}, func(string) string { return "" }, nil)
	if want := `invalid value "no-such-user-hl" for flag -u: no such user`; err == nil || err.Error() != want {
		t.Errorf("-u no-such-user-hl: %v, %v; want %q", cfg, err, want)
	}
}

func TestIsLogName(t *testing.T) {
	for name, want := range map[string]bool{
		"http-20190901.log": true, "http-CQ-20190901.log": true, "http-SR-20190901.log": true,
		"http-2019090.log": false, "http-201909011.log": false, "http-XX-20190901.log": false,
		"http-20190901.log.1": false, "http-2019090a.log": false, ".httplog.lock": false,
		"httplog.messages": false, "http-CQ-CR-20190901.log": false,
		"http-20190901.json": true, "http-SQ-20190901.json": true, "http-20190901.json.1": false, "http-20190901.jsonl": false,
	} {
		if isLogName(name) != want {
			t.Errorf("isLogName(%q) = %v, want %v", name, !want, want)
		}
	}
}

// TestLockDirRefusesLinks: the lock file is truncated when it is taken,
// as root at start, in a directory that the user of -u owns: a symbolic
// link or a hard link planted there must not lead the truncation to
// another file.
func TestLockDirRefusesLinks(t *testing.T) {
	for _, kind := range []string{"symlink", "hardlink"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			link := os.Symlink
			if kind == "hardlink" {
				link = os.Link
			}
			if err := link(victim, filepath.Join(dir, lockName)); err != nil {
				t.Fatal(err)
			}
			f, err := lockDir(dir)
			if err == nil {
				f.Close()
				t.Errorf("lockDir took a lock file that is a %s", kind)
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
				t.Errorf("the file the %s leads to now holds %q", kind, b)
			}
		})
	}
}

// TestCheckUnprivileged: the check after the switch finds a thread that
// kept an id or a capability.
func TestCheckUnprivileged(t *testing.T) {
	a := &account{name: "u", uid: 123, gid: 456, groups: []int{456, 789}}
	good := "Name:\thttplog\nUid:\t123\t123\t123\t123\nGid:\t456\t456\t456\t456\nGroups:\t456 789 \nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
	for _, tt := range []struct{ bad, field string }{
		{strings.Replace(good, "Uid:\t123\t123\t123\t123", "Uid:\t123\t123\t0\t123", 1), "Uid"},
		{strings.Replace(good, "Gid:\t456\t456\t456\t456", "Gid:\t456\t0\t456\t456", 1), "Gid"},
		{strings.Replace(good, "Groups:\t456 789 ", "Groups:\t0 456 789", 1), "Groups"},
		{strings.Replace(good, "CapEff:\t0000000000000000", "CapEff:\t0000000000002000", 1), "CapEff"},
		{strings.Replace(good, "CapPrm:\t0000000000000000", "CapPrm:\t000001ffffffffff", 1), "CapPrm"},
	} {
		tasks := t.TempDir()
		for i, text := range []string{good, tt.bad} {
			d := filepath.Join(tasks, strconv.Itoa(100+i))
			os.Mkdir(d, 0o755)
			writeFile(t, filepath.Join(d, "status"), text, 0o644)
		}
		// The probe of setuid(0) comes after the status files: as root
		// it would succeed (and change nothing).
		err := checkUnprivileged(a, tasks)
		if err == nil || !strings.Contains(err.Error(), tt.field+" is ") {
			t.Errorf("a thread with a wrong %s: %v", tt.field, err)
		}
	}
}

// testAccount makes a system user of its own, with a random name and a
// second group of its own, for a test run as root; both are deleted when
// the test ends.
func testAccount(t *testing.T) *account {
	t.Helper()
	requireRoot(t, "making a user for httplog -u")
	b := make([]byte, 4)
	rand.Read(b)
	name, group := "hl"+hex.EncodeToString(b), "hlg"+hex.EncodeToString(b)
	sbin := filepath.Dir(tool(t, "useradd")) // groupadd, userdel and groupdel too
	for _, argv := range [][]string{
		{"groupadd", "--system", group},
		{"useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
			"--shell", "/usr/sbin/nologin", "--groups", group, name},
	} {
		if out, err := exec.Command(filepath.Join(sbin, argv[0]), argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s ", strings.Join(argv, " "), err, out)
		}
		if argv[0] == "groupadd" {
			t.Cleanup(func() { exec.Command(filepath.Join(sbin, "groupdel"), group).Run() })
		} else {
			t.Cleanup(func() { exec.Command(filepath.Join(sbin, "userdel"), name).Run() }) // and its own group
		}
	}
	a, err := lookupAccount(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.groups) != 2 {
		t.Fatalf("user %s is in groups %v, want its own and %s", name, a.groups, group)
	}
	return a
}

// openTempDir is a temporary directory that every user may enter (a
// test's TempDir is root's alone), removed when the test ends.
func openTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "httplog-u-")
	if err == nil {
		t.Cleanup(func() { os.RemoveAll(dir) })
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkOwner checks that name belongs to a (user and group), and its mode
// when mode is not 0.
func checkOwner(t *testing.T, name string, a *account, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(name)
	if err != nil {
		t.Error(err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != a.uid || int(st.Gid) != a.gid {
		t.Errorf("%s belongs to %d:%d, want %s", name, st.Uid, st.Gid, a)
	}
	if mode != 0 && fi.Mode().Perm() != mode {
		t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), mode)
	}
}

// checkProcessUser checks /proc/PID/status of every thread of pid: the
// user and group of a in all four places (real, effective, saved, file
// system), a's groups, and no capability at all.
func checkProcessUser(t *testing.T, pid int, a *account) {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("no threads of pid %d: %v", pid, err)
	}
	var groups []string
	for _, g := range a.groups {
		groups = append(groups, strconv.Itoa(g))
	}
	four := func(id int) string { return strings.TrimSpace(strings.Repeat(strconv.Itoa(id)+" ", 4)) }
	want := map[string]string{"Uid": four(a.uid), "Gid": four(a.gid), "Groups": strings.Join(groups, " "),
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapAmb": "0000000000000000"}
	for _, name := range tasks {
		b, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got := procStatus(string(b))
		for k, v := range want {
			if g := strings.Join(strings.Fields(got[k]), " "); g != v {
				t.Errorf("%s: %s: %q, want %q", name, k, g, v)
			}
		}
	}
	t.Logf("pid %d: %d threads, each with uid %d, gid %d, groups %v and no capability", pid, len(tasks), a.uid, a.gid, a.groups)
}

// TestPrivilegeLive: started as root with -u, httplog captures in a
// namespace as a user of the test's own, with that user's ids on every
// thread and no capability left, and everything after the switch still
// works: appending to the day's file root had made, SIGHUP after a
// rename, the directory removed and made again (its parent is the
// user's), the interface going down and up. One daemon goes through these
// steps in turn, each from the state the last left, so the test is one
// long sequence.
func TestPrivilegeLive(t *testing.T) {
	a := testAccount(t) // deleted after the topology's processes have ended
	tp := newTopology(t)
	ng := tp.startNginx(tp.srvNS)
	base := openTempDir(t)
	parent := filepath.Join(base, "parent")
	if err := os.Mkdir(parent, 0o750); err != nil {
		t.Fatal(err)
	}
	os.Chown(parent, a.uid, a.gid)
	dir := filepath.Join(parent, "log")
	day := filepath.Join(dir, todayFile())
	os.Mkdir(dir, 0o700) // root's, as an older start left it
	old := time.Now().Format("2006-01-02 15:04:05.000") + " 192.0.2.1#1 192.0.2.2#80 CQ GET /from-root HTTP/1.1 - -\n"
	if err := os.WriteFile(day, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}

	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-u", a.name, "-cpu", "2")
	if want := ", as " + a.String(); !strings.Contains(d.stderr.String(), want) {
		t.Errorf("the start message does not say %q:\n%s", want, d.stderr.String())
	}
	checkProcessUser(t, d.cmd.Process.Pid, a)
	checkOwner(t, dir, a, 0o700)
	checkOwner(t, filepath.Join(dir, lockName), a, 0o640)
	curl := func(path string) exchange {
		return tp.curl(t, tp.cliNS, curlRequest{method: "GET", url: httpURL(tp.srv4, 80, path), ua: "hl-user/1"})
	}
	seen := func(file string, x exchange) {
		t.Helper()
		waitForLines(t, file, x.requestText("CQ"), x.responseText("CR"))
		checkOwner(t, file, a, 0)
	}

	// The day's file root made is the user's now, and appended to.
	seen(day, curl("/appended"))
	if b, _ := os.ReadFile(day); !strings.HasPrefix(string(b), old) {
		t.Errorf("%s lost the line it had:\n%s", day, b)
	}

	// logrotate's way: rename, SIGHUP; the user makes the new file.
	rotated := filepath.Join(base, "rotated.log")
	if err := os.Rename(day, rotated); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	if !d.stderr.waitText("SIGHUP: log files closed", 5*time.Second) {
		t.Fatalf("no SIGHUP message:\n%s", d.stderr.String())
	}
	seen(day, curl("/after-sighup"))
	checkOwner(t, day, a, 0o640)

	// The directory removed: the user makes it again, and its lock.
	removeLogDir(t, dir)
	from := time.Now()
	x3 := curl("/after-removal")
	seen(day, x3)
	checkOwner(t, dir, a, 0o750)
	if !d.stderr.waitText("its directory is locked again", 5*time.Second) {
		t.Errorf("the lock was not taken again:\n%s", d.stderr.String())
	}
	checkOwner(t, filepath.Join(dir, lockName), a, 0o640)

	// The interface down and up: the socket opened as root still serves.
	tp.flap(t, d)
	x4 := curl("/after-down-up")
	seen(day, x4)
	checkProcessUser(t, d.cmd.Process.Pid, a) // threads started since too

	stderr := stopHttplog(t, d)
	expectExchanges(t, readLogDir(t, dir), from, time.Now(), exchangeGroup{[]exchange{x3, x4}, "CQ", "CR"})
	stats := parseStats(t, stderr)
	if stats["CQ"] != 4 || stats["CR"] != 4 || stats["lines_lost"] != 0 || stats["write_errors"] != 0 || stats["kernel_drops"] != 0 {
		t.Errorf("final statistics: %s", lastStatsLine(stderr))
	}
	if n := len(ng.stop(t)); n != 4 {
		t.Errorf("nginx logged %d requests, want 4", n)
	}
}

// TestPrivilegeFiles: with -u and a capture from a pipe (-r -), a day's
// file root had made (mode 0600 in a directory of mode 0700) is handed to
// the user and appended to, a new day's file is the user's; when the
// directory is removed and its parent is root's, the user cannot make it
// again: lines are held, the write errors reported and counted, and
// written once the operator has made the directory again.
func TestPrivilegeFiles(t *testing.T) {
	a := testAccount(t)
	parent := openTempDir(t) // root's, mode 0755
	dir := filepath.Join(parent, "log")
	os.Mkdir(dir, 0o700)
	day1 := time.Date(2030, 1, 2, 23, 59, 59, 999e6, time.Local)
	day2 := day1.Add(time.Millisecond)
	name := func(at time.Time) string { return filepath.Join(dir, logFileName("", at)) }
	old := day1.Add(-time.Hour).Format("2006-01-02 15:04:05.000") + " 192.0.2.1#1 198.51.100.2#80 CQ GET /root HTTP/1.1 - -\n"
	if err := os.WriteFile(name(day1), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startPiped(t, "-d", dir, "-u", a.name)
	if !d.stderr.waitText(" started: ", 5*time.Second) {
		t.Fatalf("no start:\n%s", d.stderr.String())
	}
	checkProcessUser(t, d.cmd.Process.Pid, a)
	send := func(at time.Time, path string) string {
		fr := ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, "GET "+path+" HTTP/1.1\r\n\r\n")
		if err := d.pcap.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(fr), Length: len(fr)}, fr); err != nil {
			t.Fatal(err)
		}
		return "CQ GET " + path + " HTTP/1.1 - -"
	}
	waitForLines(t, name(day1), send(day1, "/before-midnight"))
	waitForLines(t, name(day2), send(day2, "/after-midnight"))
	checkOwner(t, name(day1), a, 0o600)
	checkOwner(t, name(day2), a, 0o640)
	if b, _ := os.ReadFile(name(day1)); !strings.HasPrefix(string(b), old) {
		t.Errorf("%s lost the line it had:\n%s", name(day1), b)
	}

	removeLogDir(t, dir)
	held := send(day2, "/held")
	if !d.stderr.waitText("permission denied", 5*time.Second) {
		t.Fatalf("no write error for a directory the user cannot make:\n%s", d.stderr.String())
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the user made %s in a parent of root's: %v", dir, err)
	}
	// The operator makes it again, for the user: the held line follows.
	os.Mkdir(dir, 0o750)
	os.Chown(dir, a.uid, a.gid)
	waitForLines(t, name(day2), held)
	checkOwner(t, name(day2), a, 0o640)
	stderr := d.finish(t)
	stats := parseStats(t, stderr)
	if stats["CQ"] != 3 || stats["lines_lost"] != 0 || stats["write_errors"] == 0 {
		t.Errorf("final statistics: %s\nwant CQ=3, lines_lost=0 and the write errors counted", lastStatsLine(stderr))
	}
}

// TestHandOver: the directory, the lock and httplog's own files are given
// to the user; nothing is given through a symbolic link or a second name
// (a hard link) that the user could have planted, nor files that are not
// httplog's; the parents this start made can be entered by anyone.
func TestHandOver(t *testing.T) {
	requireRoot(t, "giving files to another user")
	a := &account{name: "test", uid: 54321, gid: 54322} // chown needs no such user
	base := t.TempDir()
	dir := filepath.Join(base, "made", "log")
	missing := missingDirs(dir)
	if len(missing) != 2 || missing[0] != dir {
		t.Fatalf("missingDirs(%s) = %q", dir, missing)
	}
	if _, err := checkDir(dir, true); err != nil {
		t.Fatal(err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	outside := t.TempDir()
	victim, victim2 := filepath.Join(outside, "victim"), filepath.Join(outside, "victim2")
	for _, f := range []string{victim, victim2, filepath.Join(dir, "http-20300101.log"), filepath.Join(dir, "http-SR-20300101.log"), filepath.Join(dir, "notes.txt")} {
		writeFile(t, f, "x\n", 0o644)
	}
	os.Symlink(victim, filepath.Join(dir, "http-20300102.log"))
	os.Link(victim2, filepath.Join(dir, "http-20300103.log"))
	if err := handOver(a, dir, missing, lock); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{dir, filepath.Join(dir, lockName), filepath.Join(dir, "http-20300101.log"), filepath.Join(dir, "http-SR-20300101.log")} {
		checkOwner(t, f, a, 0)
	}
	for _, f := range []string{victim, victim2, filepath.Join(dir, "notes.txt"), filepath.Join(dir, "http-20300102.log")} {
		if st, err := os.Lstat(f); err != nil || st.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("%s: %v, owner %d, want it left root's", f, err, st.Sys().(*syscall.Stat_t).Uid)
		}
	}
	if fi, err := os.Stat(filepath.Dir(dir)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the parent made for %s: %v, %v; want mode 0755", dir, fi.Mode().Perm(), err)
	}
	// -d a symbolic link: followed to write, never to give away.
	link := filepath.Join(base, "link")
	os.Symlink(outside, link)
	l2, err := lockDir(link)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if err := handOver(a, link, nil, l2); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(outside); st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the directory that -d %s leads to was given away", link)
	}
}
