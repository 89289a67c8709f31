package main

// The writer: one goroutine owns every log file. It alone opens, writes,
// rotates by day, reopens on SIGHUP (sent to it on a channel, so no
// mutex), flushes on a ticker and when its input closes.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	ext   string // of the file names, after the day: the format's (".log", ".json")
	out   io.Writer
	// open opens a log file for appending; os.OpenFile in production.
	open func(name string) (io.WriteCloser, error)
	log  *log.Logger
	// lock is the lock file of dir, taken by lockDir before capture
	// started (nil with -d - and in tests); its owner closes it.
	lock *os.File
}

// logFile is one open (or to be opened) log file and its pending bytes.
type logFile struct {
	name string
	day  uint32
	w    io.WriteCloser // nil until opened, and after a failed open
	file regularFile    // w when it is a file on disk (not a pipe or a test's writer), else nil
	buf  []byte         // lines not yet in the file, whole: buf starts a line
	// written bytes at the start of buf are already in the file: the head
	// of a line whose write stopped part-way (disk full). They stay in buf
	// so that, if the rest never follows, the head can be cut from this
	// file and the whole line written to another.
	written int
	lastUse time.Time
	failing bool // the last write or open failed: hold lines, retry on the tick
}

// regularFile is what the writer needs of a log file on disk beyond
// writing to it: its size and last byte, cutting it back, and its
// descriptor for fstat. *os.File has all of them.
type regularFile interface {
	io.Seeker
	io.ReaderAt
	Truncate(size int64) error
	Fd() uintptr
}

// writer turns line batches into files.
type writer struct {
	cfg     writerConfig
	stats   *counterSet         // lines by type, lines lost, write errors
	files   map[uint32]*logFile // by fileKey
	newest  uint32              // latest day seen
	lastErr time.Time
	now     func() time.Time
	// relock is the lock file taken again after the first one's file
	// went (followLock); the writer owns it. lockTaken: another process
	// holds the directory's new lock, and that was said.
	relock    *os.File
	lockTaken bool
}

func newWriter(cfg writerConfig, stats *counterSet) *writer {
	if cfg.open == nil {
		cfg.open = openAppend
	}
	if cfg.ext == "" {
		cfg.ext = ".log"
	}
	return &writer{cfg: cfg, stats: stats, files: map[uint32]*logFile{}, now: time.Now}
}

// openAppend opens a log file for appending, creating it with mode 0640
// (and its directory with mode 0750) when missing. It is opened for
// reading too, so that its last byte can be checked (openFile).
func openAppend(name string) (io.WriteCloser, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(name), 0o750); err == nil {
			f, err = os.OpenFile(name, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
		}
	}
	return f, err
}

// lockName is the file in the log directory that an httplog holds an
// exclusive flock(2) on while it runs, so that a second one writing into
// the same directory (every line twice, interleaved) is refused. The
// file holds the holder's pid; it is left in place at exit (removing a
// lock file races with the next holder), and the kernel drops the lock
// when the process ends, however it ends.
const lockName = ".httplog.lock"

// errLocked: another process holds the directory's lock.
var errLocked = errors.New("another httplog is writing into this directory")

// prepareDir makes the log directory if missing, checks it is writable
// and locks it against a second httplog; the lock is nil with -d -.
func prepareDir(dir string) (*os.File, error) {
	if dir == "-" {
		return nil, nil
	}
	if _, err := checkDir(dir, true); err != nil {
		return nil, err
	}
	return lockDir(dir)
}

// lockDir takes the lock of a log directory. The error names -d and the
// directory, and says which process holds the lock when one does.
func lockDir(dir string) (*os.File, error) {
	name := filepath.Join(dir, lockName)
	// Never through a symbolic link, and never a file with a second name:
	// the lock is truncated below, as root when httplog starts, in a
	// directory that the user of -u owns (close-on-exec, as os opens
	// every file).
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, fmt.Errorf("-d %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		f.Close()
		return nil, fmt.Errorf("-d %s: %s is not a plain file of its own (a hard link?): not using it", dir, name)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			var b [24]byte
			n, _ := f.ReadAt(b[:], 0)
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil && pid > 0 {
				return nil, fmt.Errorf("-d %s: %w (pid %d holds %s)", dir, errLocked, pid, name)
			}
			return nil, fmt.Errorf("-d %s: %w (it holds %s)", dir, errLocked, name)
		}
		return nil, fmt.Errorf("-d %s: locking %s: %w", dir, name, err)
	}
	// The pid is for the message above only: a full disk, where this
	// write fails, must not stop httplog from starting.
	if f.Truncate(0) == nil {
		f.WriteAt(strconv.AppendInt(nil, int64(os.Getpid()), 10), 0)
	}
	return f, nil
}

// fileName is the name of the file of a day and type.
func (w *writer) fileName(day uint32, typ lineType) string {
	if w.cfg.split {
		return filepath.Join(w.cfg.dir, fmt.Sprintf("http-%s-%08d%s", typ, day, w.cfg.ext))
	}
	return filepath.Join(w.cfg.dir, fmt.Sprintf("http-%08d%s", day, w.cfg.ext))
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

// checkDir checks that dir is, or can be made, a writable directory: it,
// or else the nearest of its parents that exists, must be a directory
// this process may write into. With create, the missing part is made
// (mode 0750). It reports whether dir was missing.
func checkDir(dir string, create bool) (missing bool, err error) {
	p := dir
	for {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return false, fmt.Errorf("-d %s: %s is not a directory", dir, p)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			return false, fmt.Errorf("-d %s: %v", dir, err)
		}
		missing = true
		p = filepath.Dir(p) // ends at "/" or ".", which exist
	}
	if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
		if p == dir {
			return false, fmt.Errorf("-d %s: directory is not writable: %v", dir, err)
		}
		return false, fmt.Errorf("-d %s: cannot be created: %s is not writable: %v", dir, p, err)
	}
	if missing && create {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return false, fmt.Errorf("-d %s: %v", dir, err)
		}
	}
	return missing, nil
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
			w.followLock()
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
// an error the unwritten bytes stay buffered: the rest of a partly
// written line goes out with the next successful write, or, if the file
// is closed first, the part written is cut back from it (closeFile).
//
// After each write the file's link count is read (one fstat): when the
// file was removed (its directory removed) since it was opened, what was
// just written is in no visible file, so it is written again, whole
// lines, to a new file of the name. A rename keeps the link count; it is
// followNames' business, and the lines written meanwhile are in the
// renamed file, not lost.
func (w *writer) flush(f *logFile) {
	if len(f.buf) == 0 {
		return
	}
	for retried := false; ; retried = true {
		if f.w == nil {
			if err := w.openFile(f); err != nil {
				w.failed(f, err)
				return
			}
		}
		n, err := f.w.Write(f.buf[f.written:])
		if err == nil && !retried && f.removed() {
			f.written = 0 // the head of a line written before is gone with the file too
			w.closeFile(f)
			w.cfg.log.Printf("%s was removed: writing a new file of that name", f.name)
			continue
		}
		// Whole lines in the file leave buf; the head of a cut line stays.
		end := f.written + n
		whole := bytes.LastIndexByte(f.buf[:end], '\n') + 1
		f.buf = f.buf[:copy(f.buf, f.buf[whole:])]
		f.written = end - whole
		if err != nil {
			w.failed(f, err)
			return
		}
		break
	}
	if f.failing {
		f.failing = false
		w.cfg.log.Printf("writing %s again", f.name)
	}
}

// openFile opens f's file. A file that ends inside a line (a crash, or
// another program wrote it) is ended with a newline first, so that the
// next line starts a line of its own and no byte of the file is lost.
func (w *writer) openFile(f *logFile) error {
	wc, err := w.cfg.open(f.name)
	if err != nil {
		return err
	}
	f.w = wc
	f.file, _ = wc.(regularFile)
	if f.file == nil {
		return nil
	}
	size, err := f.file.Seek(0, io.SeekEnd)
	var last [1]byte
	if err == nil && size > 0 {
		_, err = f.file.ReadAt(last[:], size-1)
	}
	if err == nil && size > 0 && last[0] != '\n' {
		if _, err = f.w.Write([]byte{'\n'}); err == nil {
			w.cfg.log.Printf("%s ended inside a line that this httplog did not write: a newline ends it", f.name)
		}
	}
	if err != nil {
		w.closeFile(f)
		return err
	}
	return nil
}

// removed says whether f's open file has no name left (link count 0).
// Per write of up to fileBuffer bytes, and allocation-free.
func (f *logFile) removed() bool {
	if f.file == nil {
		return false
	}
	var st unix.Stat_t
	return unix.Fstat(int(f.file.Fd()), &st) == nil && st.Nlink == 0
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

// closeAll flushes and closes every file, then lets go of a lock taken
// again. Lines that still cannot be written are counted as lost (a line
// whose head was written too: closeFile cuts the head back), and the
// files are forgotten.
func (w *writer) closeAll() {
	for key, f := range w.files {
		w.flush(f)
		if n := uint64(bytes.Count(f.buf, []byte{'\n'})); n > 0 {
			w.stats.add(cLinesLost, n)
			w.cfg.log.Printf("%s: %d lines could not be written and are lost", f.name, n)
		}
		w.closeFile(f)
		delete(w.files, key)
	}
	if w.relock != nil {
		w.relock.Close()
		w.relock = nil
	}
}

// closeFile closes f's file. If it ends in the head of a line whose rest
// was not written, the head is cut back first, so that the file ends
// with a whole line; the line stays buffered, whole, for the next file.
func (w *writer) closeFile(f *logFile) {
	if f.w == nil {
		return
	}
	if f.written > 0 && f.file != nil {
		size, err := f.file.Seek(0, io.SeekEnd)
		if err == nil {
			err = f.file.Truncate(max(size-int64(f.written), 0))
		}
		if err != nil {
			w.stats.add(cWriteErrors, 1)
			w.cfg.log.Printf("%s ends inside a line: cutting back its last %d bytes failed: %v", f.name, f.written, err)
		} else {
			w.cfg.log.Printf("%s: cut back the %d bytes of a line that could not be written whole", f.name, f.written)
		}
		f.written = 0
	}
	if err := f.w.Close(); err != nil {
		w.stats.add(cWriteErrors, 1)
		w.cfg.log.Printf("closing %s: %v", f.name, err)
	}
	f.w, f.file = nil, nil
}

// followLock takes the directory's lock again when its file is gone (the
// directory was removed, or the lock file deleted) and the directory is
// there again (the writer makes it with the next lines), so that an
// httplog started on it later is still refused. The lock held until
// then is on a file that no longer has a name: it keeps nobody out. If
// another httplog got the new lock first, that is said, once. Two stat
// calls a second.
func (w *writer) followLock() {
	held := w.relock
	if held == nil {
		held = w.cfg.lock
	}
	if held == nil {
		return
	}
	name := filepath.Join(w.cfg.dir, lockName)
	if open, err := held.Stat(); err == nil {
		if named, err := os.Stat(name); err == nil && os.SameFile(open, named) {
			return
		}
	}
	f, err := lockDir(w.cfg.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return // no directory yet: the next lines make it
	case err != nil:
		if !w.lockTaken {
			w.lockTaken = true
			w.cfg.log.Printf("the lock of %s was removed and taken again by another process: %v", w.cfg.dir, err)
		}
		return
	}
	if w.relock != nil {
		w.relock.Close()
	}
	w.relock, w.lockTaken = f, false
	w.cfg.log.Printf("%s was removed: its directory is locked again", name)
}

// nopCloser keeps standard output open when the writer closes its files.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
