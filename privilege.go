package main

// Least privilege (-u USER): httplog does as root only what needs root
// (the capture socket, the log directory, its lock and its owner), then
// becomes USER on every thread for the rest of its life: parsing packets
// that anyone on the network can send, writing, daily files, SIGHUP
// reopen, re-creating a removed directory. The order is tcpdump's -Z:
// open the device, then drop, then handle what the device delivers.

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// account is the user of -u, looked up when the configuration is read.
type account struct {
	name     string
	uid, gid int
	groups   []int // its groups from /etc/group, the primary group included; sorted
}

func (a *account) String() string {
	return fmt.Sprintf("user %s (uid %d, gid %d)", a.name, a.uid, a.gid)
}

// startedAsRoot is checked before anything else when -u is given:
// changing the user needs root.
func (a *account) startedAsRoot() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("-u %s: changing the user needs root (httplog runs as uid %d)", a.name, uid)
	}
	return nil
}

// lookupAccount finds a user by name in the user database (/etc/passwd
// and /etc/group: the build has no cgo, so no NSS). root is refused: -u
// names the user that replaces root.
func lookupAccount(name string) (*account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return nil, errors.New("no such user")
		}
		return nil, fmt.Errorf("looking the user up: %v", err)
	}
	a := &account{name: name}
	if a.uid, err = strconv.Atoi(u.Uid); err == nil {
		a.gid, err = strconv.Atoi(u.Gid)
	}
	if err != nil {
		return nil, fmt.Errorf("user %s has a uid or gid that is not a number: %s:%s", name, u.Uid, u.Gid)
	}
	if a.uid == 0 {
		return nil, errors.New("that is root: -u names the user httplog runs as instead of root")
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("reading the groups of user %s: %v", name, err)
	}
	for _, id := range append(ids, u.Gid) {
		g, err := strconv.Atoi(id)
		if err != nil {
			return nil, fmt.Errorf("user %s is in group %q, which is not a number", name, id)
		}
		if !slices.Contains(a.groups, g) {
			a.groups = append(a.groups, g)
		}
	}
	slices.Sort(a.groups)
	return a, nil
}

// missingDirs lists dir and those of its parents that do not exist, the
// deepest first.
func missingDirs(dir string) []string {
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) || p == filepath.Dir(p) {
			return missing
		}
		missing = append(missing, p)
	}
}

// prepareDirFor is prepareDir (the log directory made if missing, and
// locked) for a run that becomes a (nil: no -u): a must be given up by
// root, and gets the directory (handOver).
func prepareDirFor(a *account, dir string) (*os.File, error) {
	if a == nil {
		return prepareDir(dir)
	}
	if err := a.startedAsRoot(); err != nil {
		return nil, err
	}
	missing := missingDirs(dir)
	lock, err := prepareDir(dir)
	if err == nil && lock != nil {
		if err = handOver(a, dir, missing, lock); err != nil {
			lock.Close()
			lock = nil
		}
	}
	return lock, err
}

// switchUser becomes a (nil: no -u, nothing to do) once what needs root
// is open, and checks the log directory dir as a. It returns the end of
// the start message, which names the user.
func switchUser(a *account, dir string) (string, error) {
	if a == nil {
		return "", nil
	}
	if err := becomeUser(a); err != nil {
		return "", err
	}
	if dir != "-" {
		if err := checkWritableAs(a, dir, true); err != nil {
			return "", err
		}
	}
	return ", as " + a.String(), nil
}

// handOver gives the log directory to a, before httplog becomes a: the
// directory itself, the lock file held in it, and the log files already
// there (a restart appends to the day's file; -r may append to any day's).
// Parents of dir that this start created (missing) get mode 0755, so that
// a can reach dir; they stay root's. Nothing is changed through a symbolic
// link or in a file with more than one name: a directory a owns is a
// place where a could plant those for the next start, run as root.
func handOver(a *account, dir string, missing []string, lock *os.File) error {
	for _, p := range missing {
		if p != dir {
			if err := os.Chmod(p, 0o755); err != nil {
				return fmt.Errorf("-d %s: %v", dir, err)
			}
		}
	}
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		if err := chownAt(a, dir, unix.O_DIRECTORY); err != nil {
			return fmt.Errorf("-d %s: giving it to %s: %v", dir, a, err)
		}
	}
	if err := lock.Chown(a.uid, a.gid); err != nil {
		return fmt.Errorf("-d %s: giving %s to %s: %v", dir, lock.Name(), a, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("-d %s: %v", dir, err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !isLogName(e.Name()) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		if err := chownAt(a, name, 0); err != nil && !errors.Is(err, unix.ELOOP) && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("-d %s: giving %s to %s: %v", dir, name, a, err)
		}
	}
	return nil
}

// chownAt gives the file or directory name to a unless a owns it already,
// by a descriptor opened without following a symbolic link (ELOOP if name
// is one) and only if it has one name (a hard link to a file elsewhere is
// left alone).
func chownAt(a *account, name string, flags int) error {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink != 1 {
		return nil
	}
	if int(st.Uid) == a.uid && int(st.Gid) == a.gid {
		return nil
	}
	if err := unix.Fchown(fd, a.uid, a.gid); err != nil {
		return &os.PathError{Op: "chown", Path: name, Err: err}
	}
	return nil
}

// isLogName tells whether name is one of httplog's day files:
// http-YYYYMMDD.log or http-TYPE-YYYYMMDD.log, or .json for -format json.
func isLogName(name string) bool {
	s, ok := strings.CutPrefix(name, "http-")
	if !ok {
		return false
	}
	if base, ok := strings.CutSuffix(s, ".log"); ok {
		s = base
	} else if s, ok = strings.CutSuffix(s, ".json"); !ok { // -format json's days
		return false
	}
	if len(s) == 11 && s[2] == '-' {
		if t := s[:2]; t != "CQ" && t != "CR" && t != "SQ" && t != "SR" {
			return false
		}
		s = s[3:]
	}
	if len(s) != 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// becomeUser sets the supplementary groups, the group and the user of
// every thread of the process to a's (Go's syscall package applies each
// to all threads), then checks that root cannot be had back.
func becomeUser(a *account) error {
	if err := syscall.Setgroups(a.groups); err != nil {
		return fmt.Errorf("-u %s: setting the groups: %v (changing the user needs root)", a.name, err)
	}
	if err := syscall.Setgid(a.gid); err != nil {
		return fmt.Errorf("-u %s: setting the group id %d: %v", a.name, a.gid, err)
	}
	if err := syscall.Setuid(a.uid); err != nil {
		return fmt.Errorf("-u %s: setting the user id %d: %v", a.name, a.uid, err)
	}
	if err := checkUnprivileged(a, "/proc/self/task"); err != nil {
		return fmt.Errorf("-u %s: %v", a.name, err)
	}
	return nil
}

// checkUnprivileged checks, after becomeUser, that the process cannot
// become root again: every thread (the status files under tasks) has a's
// ids in all four places (real, effective, saved, file system), a's
// groups, and no capability in its effective or permitted set; and
// setuid(0) and setgid(0) fail with EPERM.
func checkUnprivileged(a *account, tasks string) error {
	ents, err := os.ReadDir(tasks)
	if err != nil {
		return err
	}
	uid, gid := strconv.Itoa(a.uid), strconv.Itoa(a.gid)
	groups := make([]string, len(a.groups))
	for i, g := range a.groups {
		groups[i] = strconv.Itoa(g)
	}
	want := map[string]string{
		"Uid":    strings.Repeat(uid+" ", 4),
		"Gid":    strings.Repeat(gid+" ", 4),
		"Groups": strings.Join(groups, " "),
		"CapEff": "0000000000000000",
		"CapPrm": "0000000000000000",
	}
	for _, e := range ents {
		name := filepath.Join(tasks, e.Name(), "status")
		b, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread ended
		}
		if err != nil {
			return err
		}
		got := procStatus(string(b))
		for k, v := range want {
			if strings.Join(strings.Fields(got[k]), " ") != strings.TrimSpace(v) {
				return fmt.Errorf("%s: %s is %q after the switch, want %q", name, k, got[k], strings.TrimSpace(v))
			}
		}
	}
	// One thread only (RawSyscall): if one did succeed, httplog exits.
	if _, _, e := unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0); e != unix.EPERM {
		return fmt.Errorf("setuid(0) after the switch: %v, want %v", e, unix.EPERM)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGID, 0, 0, 0); e != unix.EPERM {
		return fmt.Errorf("setgid(0) after the switch: %v, want %v", e, unix.EPERM)
	}
	return nil
}

// procStatus reads the "Name:\tvalue" lines of a /proc status file.
func procStatus(text string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// checkWritableAs is the check made as a, after the switch: a can write
// into dir. For -check (made, which changes nothing, false), where a start
// would first make the missing part of dir or give dir to a, a must get
// through to the parent of what the start makes or gives. The message is
// the same for -check and a start.
func checkWritableAs(a *account, dir string, made bool) error {
	mode, p := uint32(unix.W_OK|unix.X_OK), dir
	if !made {
		if missing := missingDirs(dir); len(missing) > 0 {
			mode, p = unix.X_OK, filepath.Dir(missing[len(missing)-1])
		} else if fi, err := os.Lstat(dir); err == nil && fi.IsDir() {
			// Given to a, dir is writable by a if its mode lets its
			// owner write and enter.
			mode, p = unix.X_OK, filepath.Dir(dir)
			if fi.Mode().Perm()&0o300 != 0o300 {
				return fmt.Errorf("-d %s: user %s cannot write into it: %v", dir, a.name, unix.EACCES)
			}
		}
	}
	if err := unix.Access(p, mode); err != nil {
		return fmt.Errorf("-d %s: user %s cannot write into it: %v", dir, a.name, err)
	}
	return nil
}
