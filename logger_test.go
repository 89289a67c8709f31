package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
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

func readFile(t *testing.T, path string) string {
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

// diskFile is a file on a disk with room bytes free (unlimited when room
// < 0): a write that does not fit writes what fits and fails with ENOSPC,
// as write(2) does when a disk fills up in the middle of a write.
type diskFile struct {
	out  *bytes.Buffer
	room *int
}

func (f *diskFile) Write(b []byte) (int, error) {
	if *f.room >= 0 && len(b) > *f.room {
		n := *f.room
		f.out.Write(b[:n])
		*f.room = 0
		return n, syscall.ENOSPC
	}
	if *f.room >= 0 {
		*f.room -= len(b)
	}
	return f.out.Write(b)
}

func (f *diskFile) Close() error { return nil }

// TestWriterDiskFull: while the disk is full lines are held, not cut;
// when space returns every held line is written whole.
func TestWriterDiskFull(t *testing.T) {
	var disk bytes.Buffer
	room := 25 // bytes: the first write stops inside a line
	w, stats, messages := testWriter(t, writerConfig{dir: "/logs", open: func(string) (io.WriteCloser, error) {
		return &diskFile{out: &disk, room: &room}, nil
	}})
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
	if disk.String() != want.String() {
		t.Errorf("after the disk has space again:\n got %q\nwant %q", disk.String(), want.String())
	}
	if stats.load(cLinesLost) != 0 || !strings.Contains(messages.String(), "writing standard") && !strings.Contains(messages.String(), "writing /logs/") {
		t.Errorf("lost %d, messages %q", stats.load(cLinesLost), messages.String())
	}
}

// TestWriterLosesWholeLines: when the disk stays full, lines past the
// pending limit, and those still held at exit, are counted as lost; no
// line is ever half-written.
func TestWriterLosesWholeLines(t *testing.T) {
	var disk bytes.Buffer
	room := 1 << 20
	w, stats, _ := testWriter(t, writerConfig{dir: "/logs", open: func(string) (io.WriteCloser, error) {
		return &diskFile{out: &disk, room: &room}, nil
	}})
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
	sent := uint64((n + 99) / 100 * 100)
	written := uint64(strings.Count(disk.String(), "\n")) // lines that reached the disk whole
	counted, lost := stats.load(lineCounter(typeCQ)), stats.load(cLinesLost)
	if counted != sent || lost == 0 || lost != sent-written {
		t.Errorf("sent %d, counted %d, written %d, lost %d: every line not written must be counted lost", sent, counted, written, lost)
	}
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
