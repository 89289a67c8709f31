package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// corpusDir is the shared capture corpus: ../shared/corpus beside the
// repository, or HTTPLOG_CORPUS.
func corpusDir(t testing.TB) string {
	dir := os.Getenv("HTTPLOG_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "shared", "corpus")
	}
	if _, err := os.Stat(filepath.Join(dir, "pcaps")); err != nil {
		t.Fatalf("capture corpus not found at %s (set HTTPLOG_CORPUS): %v", dir, err)
	}
	return dir
}

// corpusCaptures lists the captures of the corpus, in name order.
func corpusCaptures(t testing.TB) []string {
	t.Helper()
	var captures []string
	err := filepath.WalkDir(filepath.Join(corpusDir(t), "pcaps"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".pcap") || strings.HasSuffix(path, ".pcapng")) {
			captures = append(captures, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(captures)
	return captures
}

// runPipeline runs httplog in-process on args with timestamps in UTC and
// returns its standard output, standard error and exit code.
func runPipeline(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cfg, err := loadConfig(args, func(string) string { return "" }, &stderr)
	if err != nil {
		t.Fatalf("loadConfig(%q): %v", args, err)
	}
	cfg.Location = time.UTC
	code := serve(context.Background(), cfg, &stdout, &stderr, nil)
	return stdout.String(), stderr.String(), code
}

// TestCorpus reads every capture of the corpus with -r … -p any -d - and
// compares the lines with the oracle: same packets, fields and order.
func TestCorpus(t *testing.T) {
	root := filepath.Join(corpusDir(t), "pcaps")
	captures := corpusCaptures(t)
	if len(captures) < 100 {
		t.Fatalf("found only %d captures under %s", len(captures), root)
	}
	rows := 0
	for _, capture := range captures {
		name, _ := filepath.Rel(root, capture)
		t.Run(name, func(t *testing.T) {
			want := expectedLines(t, capture+".expected.tsv")
			rows += len(want)
			out, stderr, code := runPipeline(t, "-r", capture, "-p", "any", "-d", "-")
			if code != 0 {
				t.Fatalf("exit code %d, stderr:\n%s", code, stderr)
			}
			checkStatsAddUp(t, stderr)
			got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if out == "" {
				got = nil
			}
			for i := 0; i < max(len(got), len(want)); i++ {
				var g, w string
				if i < len(got) {
					g = got[i]
				}
				if i < len(want) {
					w = want[i]
				}
				if g != w {
					t.Errorf("line %d:\n got %q\nwant %q", i+1, g, w)
				}
			}
		})
	}
	if rows != 360 {
		t.Errorf("compared %d expected rows, the corpus README promises 360", rows)
	}
}

// expectedLines converts an oracle file into httplog's lines. The oracle
// keeps microseconds and REQ/RESP; httplog prints milliseconds (cut, not
// rounded) and, for a file without -local, CQ/CR. An empty header cell
// means absent, which httplog writes as "-".
func expectedLines(t *testing.T, path string) []string {
	t.Helper()
	var lines []string
	for _, c := range tsvRows(t, path) {
		if len(c) != 13 {
			t.Fatalf("%s: %d columns in %q", path, len(c), strings.Join(c, "\t"))
		}
		secs, frac, _ := strings.Cut(c[1], ".")
		sec, err1 := strconv.ParseInt(secs, 10, 64)
		usec, err2 := strconv.ParseInt(frac, 10, 64)
		if err1 != nil || err2 != nil || len(frac) != 6 {
			t.Fatalf("%s: bad time %q", path, c[1])
		}
		ts := time.Unix(sec, usec*1000).UTC()
		typ := map[string]string{"REQ": "CQ", "RESP": "CR"}[c[6]]
		lines = append(lines, fmt.Sprintf("%s %s#%s %s#%s %s %s %s %s",
			ts.Format("2006-01-02 15:04:05.000"), c[2], c[3], c[4], c[5], typ, c[12], dash(c[10]), dash(c[11])))
	}
	return lines
}

// tsvRows reads the rows of a tab-separated oracle file, split in cells.
func tsvRows(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rows = append(rows, strings.Split(sc.Text(), "\t"))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
