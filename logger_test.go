package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// batchOf builds a line batch; each line is "TEXT\n" for day and type.
func batchOf(lines ...lineInput) *lineBatch {
	b := &lineBatch{}
	for _, l := range lines {
		b.buf = append(b.buf, l.text+"\n"...)
		b.lines = append(b.lines, lineRef{end: uint32(len(b.buf)), day: l.day, typ: l.typ})
	}
	return b
}

type lineInput struct {
	text string
	day  uint32
	typ  lineType
}

func testWriter(t *testing.T, cfg writerConfig) (*writer, *counterSet, *bytes.Buffer) {
	var messages bytes.Buffer
	cfg.log = log.New(&messages, "", 0)
	stats := &counterSet{}
	return newWriter(cfg, stats), stats, &messages
}

// runWriter feeds batches through writer.run, as the pipeline does, and
// waits until it has flushed and closed everything.
func runWriter(w *writer, batches ...*lineBatch) {
	in, free := make(chan *lineBatch, len(batches)), make(chan *lineBatch, len(batches))
	for _, b := range batches {
		in <- b
	}
	close(in)
	w.run(in, free, nil)
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWriterDays: the day of a line is its own; a late line of the day
// before goes to the day before's file.
func TestWriterDays(t *testing.T) {
	dir := t.TempDir()
	w, stats, _ := testWriter(t, writerConfig{dir: dir})
	runWriter(w,
		batchOf(lineInput{"a 23:59:59", 20190901, typeCQ}, lineInput{"b 00:00:00", 20190902, typeCR}),
		batchOf(lineInput{"c 23:59:59 late", 20190901, typeSQ}, lineInput{"d 00:00:01", 20190902, typeSR}),
	)
	if got := readFile(t, filepath.Join(dir, "http-20190901.log")); got != "a 23:59:59\nc 23:59:59 late\n" {
		t.Errorf("day 1: %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "http-20190902.log")); got != "b 00:00:00\nd 00:00:01\n" {
		t.Errorf("day 2: %q", got)
	}
	for typ, want := range []uint64{1, 1, 1, 1} {
		if got := stats.load(lineCounter(lineType(typ))); got != want {
			t.Errorf("%s: %d lines counted, want %d", lineType(typ), got, want)
		}
	}
}

func TestWriterSplit(t *testing.T) {
	dir := t.TempDir()
	w, _, _ := testWriter(t, writerConfig{dir: dir, split: true})
	var lines []lineInput
	for typ := typeCQ; typ < numTypes; typ++ {
		lines = append(lines, lineInput{typ.String() + " line", 20261125, typ})
	}
	runWriter(w, batchOf(lines...))
	for typ := typeCQ; typ < numTypes; typ++ {
		name := fmt.Sprintf("http-%s-20261125.log", typ)
		if got := readFile(t, filepath.Join(dir, name)); got != typ.String()+" line\n" {
			t.Errorf("%s: %q", name, got)
		}
	}
}

// TestWriterManyLines: more than one buffer's worth goes out whole and in
// order.
func TestWriterManyLines(t *testing.T) {
	dir := t.TempDir()
	w, stats, _ := testWriter(t, writerConfig{dir: dir})
	var batches []*lineBatch
	var want strings.Builder
	for i := 0; i < 200; i++ {
		var lines []lineInput
		for j := 0; j < 100; j++ {
			text := fmt.Sprintf("line %05d-%03d %s", i, j, strings.Repeat("x", 20))
			lines = append(lines, lineInput{text, 20261125, typeCQ})
			want.WriteString(text + "\n")
		}
		batches = append(batches, batchOf(lines...))
	}
	runWriter(w, batches...)
	if got := readFile(t, filepath.Join(dir, "http-20261125.log")); got != want.String() {
		t.Errorf("file differs from the lines sent (%d vs %d bytes)", len(got), want.Len())
	}
	if stats.load(lineCounter(typeCQ)) != 20000 || stats.load(cLinesLost) != 0 {
		t.Errorf("counted %d lines, %d lost", stats.load(lineCounter(typeCQ)), stats.load(cLinesLost))
	}
}

// diskFile is a log file on a disk with room bytes free (unlimited when
// room < 0): a write that does not fit writes what fits and fails with
// ENOSPC, as write(2) does when a disk fills up in the middle of a write.
// It is a real file otherwise (size, last byte, truncation).
type diskFile struct {
	*os.File
	room *int
}

func (f *diskFile) Write(b []byte) (int, error) {
	if *f.room >= 0 && len(b) > *f.room {
		n, err := f.File.Write(b[:*f.room])
		*f.room -= n
		if err == nil {
			err = syscall.ENOSPC
		}
		return n, err
	}
	if *f.room >= 0 {
		*f.room -= len(b)
	}
	return f.File.Write(b)
}

// fullDisk opens log files as diskFiles sharing room.
func fullDisk(room *int) func(string) (io.WriteCloser, error) {
	return func(name string) (io.WriteCloser, error) {
		f, err := openAppend(name)
		if err != nil {
			return nil, err
		}
		return &diskFile{File: f.(*os.File), room: room}, nil
	}
}

// checkWhole fails the test unless the file is empty or ends with '\n'.
func checkWhole(t *testing.T, name, text string) {
	t.Helper()
	if text != "" && !strings.HasSuffix(text, "\n") {
		t.Errorf("%s ends inside a line: …%q", name, text[max(len(text)-40, 0):])
	}
}

// TestWriterDiskFull: while the disk is full lines are held, not cut;
// when space returns every held line is written whole.
func TestWriterDiskFull(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "http-20261125.log")
	room := 25 // bytes: the first write stops inside a line
	w, stats, messages := testWriter(t, writerConfig{dir: dir, open: fullDisk(&room)})
	var want strings.Builder
	send := func(n int) {
		var lines []lineInput
		for i := 0; i < n; i++ {
			text := fmt.Sprintf("line %d", want.Len())
			want.WriteString(text + "\n")
			lines = append(lines, lineInput{text, 20261125, typeCQ})
		}
		w.write(batchOf(lines...))
	}
	send(10)
	w.flushAll() // fails after 25 bytes
	send(10)
	w.flushAll()
	if stats.load(cWriteErrors) != 2 || !strings.Contains(messages.String(), "no space left on device") {
		t.Errorf("write errors %d, messages %q", stats.load(cWriteErrors), messages.String())
	}
	if strings.Count(messages.String(), "write error") != 1 {
		t.Errorf("write errors are not rate-limited: %q", messages.String())
	}
	room = -1
	send(5)
	w.flushAll()
	if got := readFile(t, name); got != want.String() {
		t.Errorf("after the disk has space again:\n got %q\nwant %q", got, want.String())
	}
	if stats.load(cLinesLost) != 0 || !strings.Contains(messages.String(), "writing "+name+" again") {
		t.Errorf("lost %d, messages %q", stats.load(cLinesLost), messages.String())
	}
}

// TestWriterLosesWholeLines: when the disk stays full, lines past the
// pending limit, and those still held at exit, are counted as lost; the
// file ends with a whole line: the head of a line that could not be
// written whole is cut back at exit.
func TestWriterLosesWholeLines(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "http-20261125.log")
	room := 1 << 20 // not a multiple of 1001: the last write stops inside a line
	w, stats, messages := testWriter(t, writerConfig{dir: dir, open: fullDisk(&room)})
	line := strings.Repeat("x", 1000)
	const n = (maxPending+1<<20)/1001 + 500
	for i := 0; i < n; i += 100 {
		var lines []lineInput
		for j := 0; j < 100; j++ {
			lines = append(lines, lineInput{line, 20261125, typeCQ})
		}
		w.write(batchOf(lines...))
		w.flushAll()
	}
	w.closeAll()
	text := readFile(t, name)
	checkWhole(t, name, text)
	sent := uint64((n + 99) / 100 * 100)
	written := uint64(strings.Count(text, line+"\n"))
	counted, lost := stats.load(lineCounter(typeCQ)), stats.load(cLinesLost)
	if counted != sent || lost == 0 || lost != sent-written || len(text) != int(written)*1001 {
		t.Errorf("sent %d, counted %d, written %d (%d bytes), lost %d: every line not written must be counted lost", sent, counted, written, len(text), lost)
	}
	if !strings.Contains(messages.String(), fmt.Sprintf("cut back the %d bytes of a line", (1<<20)%1001)) {
		t.Errorf("the cut is not reported: %q", messages.String())
	}
}

// TestWriterCutsBackOnRotate: a file renamed (logrotate) while the disk
// is full and the head of a line is in it: the head is cut from the
// renamed file and the whole line goes to the new file.
func TestWriterCutsBackOnRotate(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "http-20261125.log")
	room := 10
	w, stats, _ := testWriter(t, writerConfig{dir: dir, open: fullDisk(&room)})
	w.write(batchOf(lineInput{"one", 20261125, typeCQ}, lineInput{"two two two", 20261125, typeCQ}))
	w.flushAll() // "one\ntwo tw", then ENOSPC
	if err := os.Rename(name, name+".1"); err != nil {
		t.Fatal(err)
	}
	room = -1
	w.followNames()
	w.flushAll()
	w.closeAll()
	if got := readFile(t, name+".1"); got != "one\n" {
		t.Errorf("renamed file: %q, want \"one\\n\"", got)
	}
	if got := readFile(t, name); got != "two two two\n" {
		t.Errorf("new file: %q, want \"two two two\\n\"", got)
	}
	if stats.load(cLinesLost) != 0 {
		t.Errorf("%d lines lost", stats.load(cLinesLost))
	}
}

// TestWriterEndsForeignLine: a file found ending inside a line (a crash,
// another program) is ended with a newline before the first line is
// appended: nothing merges, no byte of it is removed. A file ending with
// a newline, or empty, is left as it is.
func TestWriterEndsForeignLine(t *testing.T) {
	for _, tt := range []struct {
		before, after string
		ended         bool // the message says the file ended inside a line
	}{
		{"someone else's half li", "someone else's half li\nnew\n", true},
		{"old\n", "old\nnew\n", false},
		{"", "new\n", false},
	} {
		dir := t.TempDir()
		name := filepath.Join(dir, "http-20261125.log")
		if err := os.WriteFile(name, []byte(tt.before), 0o640); err != nil {
			t.Fatal(err)
		}
		w, _, messages := testWriter(t, writerConfig{dir: dir})
		runWriter(w, batchOf(lineInput{"new", 20261125, typeCQ}))
		if got := readFile(t, name); got != tt.after {
			t.Errorf("file %q, after a line: %q, want %q", tt.before, got, tt.after)
		}
		if strings.Contains(messages.String(), "ended inside a line") != tt.ended {
			t.Errorf("file %q: messages %q", tt.before, messages.String())
		}
	}
}

// TestWriterDirectoryRemoved: lines written after the directory was
// removed reach a new file at the next write, without waiting for the
// once-a-second check (followNames is not called here); none is lost or
// doubled, and a line cut by a full disk before the removal is written
// whole.
func TestWriterDirectoryRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	name := filepath.Join(dir, "http-20261125.log")
	room := -1
	w, stats, messages := testWriter(t, writerConfig{dir: dir, open: fullDisk(&room)})
	w.write(batchOf(lineInput{"one", 20261125, typeCQ}))
	w.flushAll()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	w.write(batchOf(lineInput{"two", 20261125, typeCQ}))
	w.flushAll()
	if got := readFile(t, name); got != "two\n" {
		t.Errorf("after the removal: %q, want \"two\\n\"", got)
	}

	room = len("three\nfo") // the disk fills inside "four"
	w.write(batchOf(lineInput{"three", 20261125, typeCQ}, lineInput{"four", 20261125, typeCQ}))
	w.flushAll()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	room = -1
	w.write(batchOf(lineInput{"five", 20261125, typeCQ}))
	w.flushAll()
	w.closeAll()
	if got := readFile(t, name); got != "four\nfive\n" || stats.load(cLinesLost) != 0 {
		t.Errorf("after a removal with a line half written: %q, want \"four\\nfive\\n\"; lost %d", got, stats.load(cLinesLost))
	}
	if strings.Count(messages.String(), "was removed") != 2 {
		t.Errorf("messages: %q", messages.String())
	}
}

// TestWriterFlushAllocs: writing lines and flushing them to a file (with
// its link count check) allocates nothing.
func TestWriterFlushAllocs(t *testing.T) {
	w, _, _ := testWriter(t, writerConfig{dir: t.TempDir()})
	b := batchOf(lineInput{"GET / HTTP/1.1", 20261125, typeCQ}, lineInput{"HTTP/1.1 200 OK", 20261125, typeCR})
	w.write(b)
	w.flushAll() // opens the file
	if n := testing.AllocsPerRun(100, func() {
		w.write(b)
		w.flushAll()
	}); n != 0 {
		t.Errorf("write and flush: %.1f allocations, want 0", n)
	}
	w.closeAll()
}

// TestWriterReopen: after a logrotate-style rename and a reopen, new lines
// go to a new file of the same name; nothing is lost.
func TestWriterReopen(t *testing.T) {
	dir := t.TempDir()
	w, _, _ := testWriter(t, writerConfig{dir: dir})
	name := filepath.Join(dir, "http-20261125.log")
	w.write(batchOf(lineInput{"before", 20261125, typeCQ}))
	w.flushAll()
	if err := os.Rename(name, name+".1"); err != nil {
		t.Fatal(err)
	}
	w.write(batchOf(lineInput{"between", 20261125, typeCQ})) // still the old file
	w.reopen()
	w.write(batchOf(lineInput{"after", 20261125, typeCQ}))
	w.closeAll()
	if got := readFile(t, name+".1"); got != "before\nbetween\n" {
		t.Errorf("rotated file: %q", got)
	}
	if got := readFile(t, name); got != "after\n" {
		t.Errorf("new file: %q", got)
	}
}

// TestWriterFollowsNames: when a file is renamed, or its directory is
// removed, lines go to a new file of the same name within a tick; lines
// written before that stay in the old file; nothing is lost.
func TestWriterFollowsNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	name := filepath.Join(dir, "http-20261125.log")
	w, stats, messages := testWriter(t, writerConfig{dir: dir})
	w.write(batchOf(lineInput{"one", 20261125, typeCQ}))
	w.followNames()
	w.flushAll()
	if err := os.Rename(name, name+".1"); err != nil {
		t.Fatal(err)
	}
	w.write(batchOf(lineInput{"two", 20261125, typeCQ})) // buffered: goes to the new file
	w.followNames()
	w.flushAll()
	w.write(batchOf(lineInput{"three", 20261125, typeCQ}))
	w.followNames()
	w.flushAll()
	if got := readFile(t, name+".1"); got != "one\n" {
		t.Errorf("renamed file: %q", got)
	}
	if got := readFile(t, name); got != "two\nthree\n" {
		t.Errorf("new file: %q", got)
	}

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	w.write(batchOf(lineInput{"four", 20261125, typeCQ}))
	w.followNames()
	w.flushAll()
	w.closeAll()
	if got := readFile(t, name); got != "four\n" || stats.load(cLinesLost) != 0 {
		t.Errorf("after the directory was removed: %q, lost %d", got, stats.load(cLinesLost))
	}
	if strings.Count(messages.String(), "was moved or removed") != 2 {
		t.Errorf("messages: %q", messages.String())
	}
}

func TestWriterStdout(t *testing.T) {
	var out bytes.Buffer
	w, _, _ := testWriter(t, writerConfig{dir: "-", split: true, out: &out})
	runWriter(w, batchOf(lineInput{"x", 20190901, typeCQ}, lineInput{"y", 20190902, typeSR}))
	if out.String() != "x\ny\n" {
		t.Errorf("stdout: %q", out.String())
	}
}

// TestLockDir: a second httplog on a locked directory is refused before
// it reads a packet, with one line naming -d, the directory and the pid
// of the holder; when the holder lets go, the directory can be taken.
// flock conflicts between two opens of the file even in one process.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	held, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	lockFile := filepath.Join(dir, lockName)
	if got := readFile(t, lockFile); got != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want the pid %d", got, os.Getpid())
	}
	_, stderr, code := runPipeline(t, "-r", filepath.Join("testdata", "seed.pcap"), "-d", dir)
	want := fmt.Sprintf("httplog: -d %s: another httplog is writing into this directory (pid %d holds %s)\n", dir, os.Getpid(), lockFile)
	if code != 1 || stderr != want {
		t.Errorf("second start: exit %d, stderr %q\nwant exit 1, %q", code, stderr, want)
	}
	if logs, _ := filepath.Glob(filepath.Join(dir, "http-*")); len(logs) != 0 {
		t.Errorf("the refused start wrote %q", logs)
	}
	held.Close()
	if _, stderr, code := runPipeline(t, "-r", filepath.Join("testdata", "seed.pcap"), "-d", dir); code != 0 {
		t.Errorf("after the lock was let go: exit %d, %s", code, stderr)
	}
}

// TestWriterFollowsLock: when the directory is removed, the lock stays
// on a file without a name; once the directory is made again (by the
// next lines) the writer locks it again within a tick, so a later start
// on it is still refused. If another process got the new lock first,
// that is said once.
func TestWriterFollowsLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	os.Mkdir(dir, 0o750)
	held, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	w, _, messages := testWriter(t, writerConfig{dir: dir, lock: held})
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	w.followLock() // no directory: nothing to lock yet
	w.write(batchOf(lineInput{"one", 20261125, typeCQ}))
	w.flushAll() // makes the directory
	w.followLock()
	if _, err := lockDir(dir); !errors.Is(err, errLocked) {
		t.Errorf("a start after the directory was made again: %v, want it refused", err)
	}

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(dir, 0o750)
	other, err := lockDir(dir) // another httplog, started in between
	if err != nil {
		t.Fatal(err)
	}
	w.followLock()
	w.followLock()
	if n := strings.Count(messages.String(), "taken again by another process"); n != 1 {
		t.Errorf("said %d times that another process holds the lock: %q", n, messages.String())
	}
	other.Close()
	w.followLock()
	w.closeAll()
	if l, err := lockDir(dir); err != nil {
		t.Errorf("after the writer closed: %v", err)
	} else {
		l.Close()
	}
}

// TestServeLostLinesExit: -r exits 1 when lines could not be written,
// after the statistics line that counts them. A directory where nothing
// can be created (/proc) is refused before capture.
func TestServeLostLinesExit(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "http-20190901.log"), 0o750); err != nil { // every open of the day's file fails
		t.Fatal(err)
	}
	_, stderr, code := runPipeline(t, "-r", filepath.Join("testdata", "seed.pcap"), "-d", dir)
	if code != 1 || !strings.Contains(stderr, " write_errors=1 lines_lost=4\n") || !strings.HasSuffix(stderr, "4 lines could not be written (lines_lost): exit 1\n") {
		t.Errorf("every open failing: exit %d, stderr:\n%s", code, stderr)
	}
	_, stderr, code = runPipeline(t, "-r", filepath.Join("testdata", "seed.pcap"), "-d", "/proc")
	if want := "httplog: -d /proc: open /proc/" + lockName + ": no such file or directory\n"; code != 1 || stderr != want {
		t.Errorf("-d /proc: exit %d, stderr %q, want exit 1, %q", code, stderr, want)
	}
}
