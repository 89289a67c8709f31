package main

// The writer: one goroutine owns every log file. It alone opens, writes,
// rotates by day, reopens on SIGHUP (sent to it on a channel, so no
// mutex), flushes on a ticker and when its input closes.

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lineBatch carries formatted lines from a parser to the writer.
type lineBatch struct {
	buf   []byte    // the lines, each ending in '\n'
	lines []lineRef // one per line, in order
}

// lineRef locates one line of a batch and says where it goes.
type lineRef struct {
	end uint32   // offset just after the line's '\n' in buf
	day uint32   // local date of its timestamp, YYYYMMDD
	typ lineType // CQ, CR, SQ, SR
}

func (b *lineBatch) reset() {
	b.buf, b.lines = b.buf[:0], b.lines[:0]
}

// Buffer sizes of one log file.
const (
	// fileBuffer: lines are gathered into writes of this size, so a busy
	// day file costs one write(2) per 256 KiB rather than one per line.
	fileBuffer = 256 << 10
	// maxPending bounds what a file may hold while the disk refuses
	// writes (disk full, directory gone): 16 MiB is several seconds of a
	// busy server's lines. Past it new lines are counted as lost, whole.
	maxPending = 16 << 20
	// idleClose: a file of an earlier day with no new line for this long
	// is closed; late lines of that day reopen it in append mode.
	idleClose = time.Minute
	// errorReportEvery rate-limits the messages about write errors.
	errorReportEvery = 10 * time.Second
)

// writerConfig says where lines go.
type writerConfig struct {
	dir   string // directory; "-" for out
	split bool   // one file per type and day
	out   io.Writer
	// open opens a log file for appending; os.OpenFile in production.
	open func(name string) (io.WriteCloser, error)
	log  *log.Logger
}

// logFile is one open (or to be opened) log file and its pending bytes.
type logFile struct {
	name    string
	day     uint32
	w       io.WriteCloser // nil until opened, and after a failed open
	buf     []byte
	lastUse time.Time
	failing bool // the last write or open failed: hold lines, retry on the tick
}

// writer turns line batches into files.
type writer struct {
	cfg     writerConfig
	stats   *counterSet         // lines by type, lines lost, write errors
	files   map[uint32]*logFile // by fileKey
	newest  uint32              // latest day seen
	lastErr time.Time
	now     func() time.Time
}

func newWriter(cfg writerConfig, stats *counterSet) *writer {
	if cfg.open == nil {
		cfg.open = openAppend
	}
	return &writer{cfg: cfg, stats: stats, files: map[uint32]*logFile{}, now: time.Now}
}

// openAppend opens a log file for appending, creating it with mode 0640
// (and its directory with mode 0750) when missing.
func openAppend(name string) (io.WriteCloser, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(name), 0o750); err == nil {
			f, err = os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		}
	}
	return f, err
}

// fileName is the name of the file of a day and type.
func (w *writer) fileName(day uint32, typ lineType) string {
	if w.cfg.split {
		return filepath.Join(w.cfg.dir, fmt.Sprintf("http-%s-%08d.log", typ, day))
	}
	return filepath.Join(w.cfg.dir, fmt.Sprintf("http-%08d.log", day))
}

// startWriter starts the writer goroutine. Parsers take empty batches
// from free, fill them and send them to lines; the writer hands each back
// to free once written. When lines is closed the writer flushes and
// closes every file, then closes done. A value on reopen (SIGHUP) closes
// the files so that the next lines open them anew.
func startWriter(cfg writerConfig, stats *counterSet, parsers int, reopen <-chan struct{}) (lines, free chan *lineBatch, done <-chan struct{}) {
	lines = make(chan *lineBatch, queueDepth)
	// Enough batches for a full queue and two in the hands of each parser.
	free = make(chan *lineBatch, queueDepth+2*parsers)
	for i := 0; i < cap(free); i++ {
		free <- &lineBatch{}
	}
	w := newWriter(cfg, stats)
	written := make(chan struct{})
	go func() {
		defer close(written)
		w.run(lines, free, reopen)
	}()
	return lines, free, written
}

// checkDir creates the log directory if missing and checks it is writable.
func checkDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("-d %s: %v", dir, err)
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Errorf("-d %s: directory is not writable: %v", dir, err)
	}
	return nil
}

// run writes batches from in until it is closed, then flushes and closes
// every file. Every second it flushes; a value on reopen closes all files
// so that the next lines open them anew (logrotate's postrotate).
func (w *writer) run(in <-chan *lineBatch, free chan<- *lineBatch, reopen <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case b, ok := <-in:
			if !ok {
				w.closeAll()
				return
			}
			w.write(b)
			b.reset()
			free <- b
		case <-tick.C:
			w.followNames()
			w.flushAll()
			w.closeIdle()
		case <-reopen:
			w.reopen()
			w.cfg.log.Printf("SIGHUP: log files closed, reopened with the next lines")
		}
	}
}

// write appends each line of b to the buffer of its file.
func (w *writer) write(b *lineBatch) {
	var counts [numTypes]uint64
	var lost uint64
	start := uint32(0)
	var last *logFile
	var lastKey uint32 = ^uint32(0)
	for _, l := range b.lines {
		line := b.buf[start:l.end]
		start = l.end
		key := w.fileKey(l.day, l.typ)
		if key != lastKey {
			last, lastKey = w.file(key, l.day, l.typ), key
		}
		f := last
		counts[l.typ]++
		if f.failing && len(f.buf)+len(line) > maxPending {
			lost++
			continue
		}
		if len(f.buf)+len(line) > fileBuffer && !f.failing {
			w.flush(f)
		}
		f.buf = append(f.buf, line...)
	}
	for t, n := range counts {
		if n > 0 {
			w.stats.add(lineCounter(lineType(t)), n)
		}
	}
	if lost > 0 {
		w.stats.add(cLinesLost, lost)
	}
}

// fileKey identifies a file: day, and type when files are split.
func (w *writer) fileKey(day uint32, typ lineType) uint32 {
	if w.cfg.dir == "-" {
		return 0
	}
	if w.cfg.split {
		return day*uint32(numTypes) + uint32(typ) // days < 10^8, so no overflow
	}
	return day
}

// file returns the logFile of a key, making it (not yet opened) if new.
func (w *writer) file(key, day uint32, typ lineType) *logFile {
	f := w.files[key]
	if f == nil {
		f = &logFile{day: day, buf: make([]byte, 0, fileBuffer)}
		if w.cfg.dir == "-" {
			f.name = "standard output"
			f.w = nopCloser{w.cfg.out}
		} else {
			f.name = w.fileName(day, typ)
		}
		w.files[key] = f
	}
	if day > w.newest {
		w.newest = day
	}
	f.lastUse = w.now()
	return f
}

// flush writes out a file's buffer, opening the file first if needed. On
// an error the unwritten bytes stay buffered, so a line is never cut: the
// rest of a partly written line goes out with the next successful write.
func (w *writer) flush(f *logFile) {
	if len(f.buf) == 0 {
		return
	}
	if f.w == nil {
		wc, err := w.cfg.open(f.name)
		if err != nil {
			w.failed(f, err)
			return
		}
		f.w = wc
	}
	n, err := f.w.Write(f.buf)
	f.buf = f.buf[:copy(f.buf, f.buf[n:])]
	if err != nil {
		w.failed(f, err)
		return
	}
	if f.failing {
		f.failing = false
		w.cfg.log.Printf("writing %s again", f.name)
	}
}

// failed counts a write error and reports it at most every few seconds.
func (w *writer) failed(f *logFile, err error) {
	f.failing = true
	w.stats.add(cWriteErrors, 1)
	if now := w.now(); now.Sub(w.lastErr) >= errorReportEvery {
		w.lastErr = now
		w.cfg.log.Printf("write error (lines are held and retried every second; %d bytes pending): %v", len(f.buf), err)
	}
}

func (w *writer) flushAll() {
	for _, f := range w.files {
		w.flush(f)
	}
}

// followNames closes every file whose name no longer leads to it (renamed
// by logrotate, removed, its directory removed), so that the next flush
// creates a fresh file under the name, and the directory too if need be,
// with the lines still buffered. Two stat calls a file a second.
func (w *writer) followNames() {
	for _, f := range w.files {
		st, ok := f.w.(interface{ Stat() (os.FileInfo, error) })
		if !ok {
			continue // not open, standard output, or a test's writer
		}
		open, err := st.Stat()
		if err != nil {
			continue
		}
		if named, err := os.Stat(f.name); err == nil && os.SameFile(open, named) {
			continue
		}
		w.closeFile(f) // what it holds goes to the new file: the old may be gone
		w.cfg.log.Printf("%s was moved or removed: writing a new file of that name", f.name)
	}
}

// closeIdle closes files of earlier days that saw no line for a while.
func (w *writer) closeIdle() {
	now := w.now()
	for key, f := range w.files {
		if f.day < w.newest && now.Sub(f.lastUse) >= idleClose && len(f.buf) == 0 {
			w.closeFile(f)
			delete(w.files, key)
		}
	}
}

// reopen flushes and closes every file; what could not be written stays
// buffered and goes to the file opened anew under the same name.
func (w *writer) reopen() {
	for key, f := range w.files {
		w.flush(f)
		if w.cfg.dir != "-" {
			w.closeFile(f)
		}
		if len(f.buf) == 0 {
			delete(w.files, key)
		}
	}
}

// closeAll flushes and closes every file. Lines that still cannot be
// written are counted as lost, and the files are forgotten.
func (w *writer) closeAll() {
	for key, f := range w.files {
		w.flush(f)
		if n := countLines(f.buf); n > 0 {
			w.stats.add(cLinesLost, n)
			w.cfg.log.Printf("%s: %d lines could not be written and are lost", f.name, n)
		}
		w.closeFile(f)
		delete(w.files, key)
	}
}

func (w *writer) closeFile(f *logFile) {
	if f.w != nil {
		if err := f.w.Close(); err != nil {
			w.stats.add(cWriteErrors, 1)
			w.cfg.log.Printf("closing %s: %v", f.name, err)
		}
		f.w = nil
	}
}

func countLines(b []byte) uint64 {
	var n uint64
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

// nopCloser keeps standard output open when the writer closes its files.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
