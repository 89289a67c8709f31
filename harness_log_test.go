package main

// Reading what httplog wrote, for the tests that run the binary: the log
// directory (one pattern for the file names), log lines cut into their
// columns (one parser, for text lines and JSON events alike), waiting
// until lines have appeared, and checking the lines against the requests
// a test made (harness_test.go says what else the harness holds).

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// logFileRE is the name of every log file: http-YYYYMMDD.EXT, or
// http-TYPE-YYYYMMDD.EXT with -log_split, where EXT is log (text lines)
// or json (-format json); a ".1" after it is logrotate's renamed copy.
var logFileRE = regexp.MustCompile(`^http-(?:(CQ|CR|SQ|SR)-)?(\d{8})\.(?:log|json)(?:\.1)?$`)

// logFileName is the name of the file of a day's text lines: of type typ
// with -log_split, of every type when typ is "".
func logFileName(typ string, day time.Time) string {
	return logFileNameAs(typ, day, ".log")
}

// logFileNameAs is logFileName for the files of the format whose
// extension is ext (".log", ".json").
func logFileNameAs(typ string, day time.Time, ext string) string {
	if typ != "" {
		typ += "-"
	}
	return "http-" + typ + day.Format("20060102") + ext
}

// logLine is one log line, cut into its columns; a JSON event is cut as
// the text line its values make.
type logLine struct {
	file     string    // base name of its file, or where the text came from
	ts       time.Time // DATE TIME, in httplog's time zone
	rest     string    // everything after "DATE TIME "
	src, dst string    // ADDR#PORT
	typ      string    // CQ, CR, SQ, SR
	msg      string    // after TYPE: request or status line, two header values
	event    event     // the fields of a JSON event; nil for a text line
}

// client is the client's endpoint of a line: the source of a request's,
// the destination of a response's.
func (l logLine) client() string {
	if l.typ == "CR" || l.typ == "SR" {
		return l.dst
	}
	return l.src
}

// logTimeLayout is the DATE TIME of a line.
const logTimeLayout = "2006-01-02 15:04:05.000"

// parseLogLine cuts a log line (without its '\n') of httplog in the
// local time zone into columns (parseLogLineIn).
func parseLogLine(text string) (logLine, error) {
	return parseLogLineIn(text, time.Local)
}

// parseLogLineIn cuts a log line (without its '\n') of httplog in the
// time zone loc into columns. A text line: DATE TIME, ADDR#PORT twice
// with the addresses in canonical (RFC 5952) form, the TYPE, and the
// rest. A JSON event (-format json) must hold to the contract
// (parseEvent); it is cut as the text line its values make (textOf,
// without a response time), its timestamp in loc. The error says what is
// wrong.
func parseLogLineIn(text string, loc *time.Location) (logLine, error) {
	if !strings.HasPrefix(text, "{") {
		return parseTextLine(text, loc)
	}
	ev, err := parseEvent([]byte(text + "\n"))
	if err != nil {
		return logLine{}, err
	}
	l, err := parseTextLine(strings.TrimSuffix(textOf(ev), "\n"), time.UTC)
	l.ts, l.event = l.ts.In(loc), ev
	return l, err
}

// parseTextLine is parseLogLineIn for a text line.
func parseTextLine(text string, loc *time.Location) (logLine, error) {
	n := len(logTimeLayout)
	if len(text) <= n || text[n] != ' ' || !logTimeShape(text[:n]) {
		return logLine{}, errors.New("malformed line")
	}
	ts, err := time.ParseInLocation(logTimeLayout, text[:n], loc)
	if err != nil {
		return logLine{}, fmt.Errorf("bad timestamp: %v", err)
	}
	l := logLine{ts: ts, rest: text[n+1:]}
	src, r, ok1 := strings.Cut(l.rest, " ")
	dst, r, ok2 := strings.Cut(r, " ")
	typ, msg, ok3 := strings.Cut(r, " ")
	if !ok1 || !ok2 || !ok3 || (typ != "CQ" && typ != "CR" && typ != "SQ" && typ != "SR") {
		return logLine{}, errors.New("malformed line")
	}
	for _, e := range []string{src, dst} {
		i := strings.LastIndexByte(e, '#')
		if i <= 0 || i == len(e)-1 || strings.Trim(e[i+1:], "0123456789") != "" {
			return logLine{}, errors.New("malformed line")
		}
		if ip, err := netip.ParseAddr(e[:i]); err != nil || ip.String() != e[:i] {
			return logLine{}, fmt.Errorf("address %q is not in canonical form (RFC 5952)", e[:i])
		}
	}
	l.src, l.dst, l.typ, l.msg = src, dst, typ, msg
	return l, nil
}

// logTimeShape checks that s has the digits and separators of
// logTimeLayout.
func logTimeShape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := logTimeLayout[i]; c >= '0' && c <= '9' {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		} else if s[i] != c {
			return false
		}
	}
	return true
}

// parseLogText cuts the lines of text (httplog's output with -d -) into
// columns; source names the text in messages.
func parseLogText(t testing.TB, source, text string) []logLine {
	t.Helper()
	var lines []logLine
	for _, s := range strings.SplitAfter(text, "\n") {
		if s == "" {
			continue
		}
		l, err := parseLogLine(strings.TrimSuffix(s, "\n"))
		if err != nil {
			t.Errorf("%s: %v: %q", source, err, s)
			continue
		}
		l.file = source
		lines = append(lines, l)
	}
	return lines
}

// scanLogDir reads every file of the log directory, in name order (so day
// order), checks what holds for any line, and calls fn with each line.
// What holds: the name is a day file's, the mode 0640, the file ends in
// '\n' (no partial line), every line parses (parseLogLine) with a
// timestamp of the day of its file and, with split files, the type of the
// file. An error of fn is reported with the line; after ten bad lines the
// rest are only counted. httplog's lock file and the files named in
// ignore are not read.
func scanLogDir(t testing.TB, dir string, fn func(logLine) error, ignore ...string) {
	t.Helper()
	scanLogDirIn(t, dir, time.Local, fn, ignore...)
}

// scanLogDirIn is scanLogDir for an httplog whose time zone is loc.
func scanLogDirIn(t testing.TB, dir string, loc *time.Location, fn func(logLine) error, ignore ...string) {
	t.Helper()
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents { // ReadDir sorts by name
		name := ent.Name()
		if name == lockName || slices.Contains(ignore, name) {
			continue
		}
		if !logFileRE.MatchString(name) || !ent.Type().IsRegular() {
			t.Errorf("unexpected file %s in the log directory", name)
			continue
		}
		scanLogFile(t, filepath.Join(dir, name), loc, fn, report)
	}
	if bad > 10 {
		t.Errorf("%d bad lines in all", bad)
	}
}

// scanLogFile is scanLogDirIn for one file, whose name matches
// logFileRE; report reports a bad line.
func scanLogFile(t testing.TB, path string, loc *time.Location, fn func(logLine) error, report func(string, ...any)) {
	t.Helper()
	name := filepath.Base(path)
	m := logFileRE.FindStringSubmatch(name)
	day, _ := strconv.Atoi(m[2])
	if st, err := os.Stat(path); err == nil && st.Mode().Perm() != 0o640 {
		t.Errorf("%s has mode %v, want 0640", name, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("%s ends in a partial line: %q", name, b[bytes.LastIndexByte(b, '\n')+1:])
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		text := string(b[:i])
		b = b[i+1:]
		l, err := parseLogLineIn(text, loc)
		if err != nil {
			report("%s: %v: %q", name, err, text)
			continue
		}
		l.file = name
		if y, mo, d := l.ts.Date(); y*10000+int(mo)*100+d != day {
			report("%s: line of day %s: %q", name, l.ts.Format("20060102"), text)
		}
		if m[1] != "" && l.typ != m[1] {
			report("%s: line of type %s: %q", name, l.typ, text)
		}
		if err := fn(l); err != nil {
			report("%s: %v: %q", name, err, text)
		}
	}
}

// readLogDir returns the lines of the log directory, checked as by
// scanLogDir, which does not read the files named in ignore.
func readLogDir(t testing.TB, dir string, ignore ...string) []logLine {
	t.Helper()
	var lines []logLine
	scanLogDir(t, dir, func(l logLine) error {
		lines = append(lines, l)
		return nil
	}, ignore...)
	return lines
}

// logFileNames is the set of names in a log directory, but for httplog's
// lock file.
func logFileNames(t testing.TB, dir string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		if e.Name() != lockName {
			names[e.Name()] = true
		}
	}
	return names
}

// checkLogFiles checks the names in a log directory after a run from
// from to to: only the files of those days for the given types ("" for
// one file a day), and, when the run did not cross midnight, all of
// them.
func checkLogFiles(t testing.TB, dir string, from, to time.Time, types ...string) {
	t.Helper()
	want := map[string]bool{}
	y, m, d := from.Date()
	for day := time.Date(y, m, d, 0, 0, 0, 0, time.Local); !day.After(to); day = day.AddDate(0, 0, 1) {
		for _, typ := range types {
			want[logFileName(typ, day)] = true
		}
	}
	have := logFileNames(t, dir)
	for name := range have {
		if !want[name] {
			t.Errorf("unexpected file %s in the log directory (types %q)", name, types)
		}
	}
	if from.Format("20060102") == to.Format("20060102") {
		for name := range want {
			if !have[name] {
				t.Errorf("no file %s in the log directory (types %q)", name, types)
			}
		}
	}
}

// removeLogDir removes the log directory of a running httplog. httplog
// may take its lock again (at its tick) between the removal of the files
// and that of the directory: then the removal is tried again, until the
// directory is gone.
func removeLogDir(t testing.TB, dir string) {
	t.Helper()
	var err error
	if !waitFor(5*time.Second, func() bool { err = os.RemoveAll(dir); return err == nil }) {
		t.Fatal(err)
	}
}

// checkLogBytes checks every log file byte by byte: each line ends in
// '\n' and is valid UTF-8 without control bytes.
func checkLogBytes(t testing.TB, dir string) {
	t.Helper()
	for name := range logFileNames(t, dir) {
		b := []byte(readFile(t, filepath.Join(dir, name)))
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s does not end in a newline", name)
		}
		for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			if !utf8.Valid(line) {
				t.Errorf("%s line %d is not valid UTF-8: %q", name, i+1, line)
			}
			if j := bytes.IndexFunc(line, func(r rune) bool { return r < 0x20 || r == 0x7f }); j >= 0 {
				t.Errorf("%s line %d holds the control byte %#x: %q", name, i+1, line[j], line)
			}
		}
	}
}

// logLineCount is the number of whole lines in the log files of dir.
func logLineCount(dir string) int {
	n := 0
	ents, _ := os.ReadDir(dir) // none yet: 0
	for _, e := range ents {
		if logFileRE.MatchString(e.Name()) {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			n += bytes.Count(b, []byte("\n"))
		}
	}
	return n
}

// waitLogLines waits up to d until the files of dir hold n lines or more,
// and returns how many they hold.
func waitLogLines(dir string, n int, d time.Duration) int {
	got := 0
	waitFor(d, func() bool { got = logLineCount(dir); return got >= n })
	return got
}

// exchangeGroup is exchanges whose lines have the same two types, e.g.
// those a host served (CQ, CR) and those it made (SQ, SR).
type exchangeGroup struct {
	xs                []exchange
	reqType, respType string
}

// expectExchanges checks the lines against the exchanges of the groups:
// each request appears exactly once, with its group's request type, and
// each response exactly once, with its response type, not before its
// request; no other line was written; every timestamp lies between from
// and to (a second of slack each side). It returns the number of lines
// of each type.
func expectExchanges(t testing.TB, lines []logLine, from, to time.Time, groups ...exchangeGroup) map[string]int {
	t.Helper()
	count := map[string]int{}
	index := map[string][]int{}
	for i, l := range lines {
		count[l.typ]++
		index[l.rest] = append(index[l.rest], i)
		if l.ts.Before(from.Add(-time.Second)) || l.ts.After(to.Add(time.Second)) {
			t.Errorf("timestamp %s outside the test's run (%s … %s): %s", l.ts.Format(time.StampMilli), from.Format(time.StampMilli), to.Format(time.StampMilli), l.rest)
		}
	}
	want := map[string]int{}
	for _, g := range groups {
		want[g.reqType] += len(g.xs)
		want[g.respType] += len(g.xs)
		expectGroup(t, lines, index, g)
	}
	for _, typ := range []string{"CQ", "CR", "SQ", "SR"} {
		if count[typ] != want[typ] {
			t.Errorf("%d %s lines, want %d", count[typ], typ, want[typ])
		}
	}
	if t.Failed() {
		var all []string
		for _, l := range lines {
			all = append(all, l.file+": "+l.ts.Format("15:04:05.000")+" "+l.rest)
		}
		t.Logf("the lines written:\n%s", strings.Join(all, "\n"))
	}
	return count
}

// expectGroup checks the lines of one group's exchanges; index maps a
// line's text (after the timestamp) to its positions in lines.
func expectGroup(t testing.TB, lines []logLine, index map[string][]int, g exchangeGroup) {
	t.Helper()
	for i := range g.xs {
		x := &g.xs[i]
		q, r := x.requestText(g.reqType), x.responseText(g.respType)
		qi, ri := index[q], index[r]
		if len(qi) != 1 {
			t.Errorf("request %s %s: %d lines %q, want 1", x.req.method, x.req.url, len(qi), q)
		}
		if len(ri) != 1 {
			t.Errorf("response to %s %s: %d lines %q, want 1", x.req.method, x.req.url, len(ri), r)
		}
		if len(qi) == 1 && len(ri) == 1 {
			lq, lr := lines[qi[0]], lines[ri[0]]
			if lr.ts.Before(lq.ts) || (lq.file == lr.file && ri[0] < qi[0]) {
				t.Errorf("response line before its request line:\n%s %s\n%s %s", lr.file, lr.rest, lq.file, lq.rest)
			}
		}
	}
}

// checkFinalStats checks the final statistics line of httplog's standard
// error: its line counts are the lines found, and nothing was lost.
func checkFinalStats(t testing.TB, stderr string, count map[string]int) {
	t.Helper()
	stats, last := parseStats(t, stderr), lastStatsLine(stderr)
	for _, typ := range []string{"CQ", "CR", "SQ", "SR"} {
		if v, ok := stats[typ]; !ok || v != uint64(count[typ]) {
			t.Errorf("final statistics say %s=%d (present: %v), the files hold %d: %s", typ, v, ok, count[typ], last)
		}
	}
	for _, k := range []string{"lines_lost", "write_errors", "kernel_drops", "malformed"} {
		if v, ok := stats[k]; !ok || v != 0 {
			t.Errorf("final statistics: %s=%d (present: %v), want 0: %s", k, v, ok, last)
		}
	}
}

// waitForLines waits until file holds every text, each in a line.
func waitForLines(t *testing.T, file string, texts ...string) {
	t.Helper()
	var b []byte
	if !waitFor(5*time.Second, func() bool {
		b, _ = os.ReadFile(file)
		for _, s := range texts {
			if !strings.Contains(string(b), " "+s+"\n") {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("%s does not hold %q; it holds:\n%s", file, texts, b)
	}
}
