package main

import (
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestCorpusPair runs every capture of the corpus with -pair and compares
// the request each response line is timed from with tshark's pairing
// (<capture>.pairs.tsv). httplog agrees when it chose tshark's request, or
// an earlier copy of it (same connection, same TCP sequence number: tshark
// takes the newest copy, httplog times from the first), and then its time
// is tshark's to the millisecond. Every other response is a disagreement,
// and must be listed, with the reason, in docs/PAIRING.md; every row there
// must still happen.
func TestCorpusPair(t *testing.T) {
	root := filepath.Join(corpusDir(t), "pcaps")
	listed := listedDisagreements(t)
	found := map[string]string{}
	responses := 0
	for _, capture := range corpusCaptures(t) {
		name, _ := filepath.Rel(root, capture)
		rows := corpusRows(t, capture+".expected.tsv")
		if len(rows) == 0 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			out, stderr, code := runPipeline(t, "-r", capture, "-p", "any", "-d", "-", "-pair")
			if code != 0 {
				t.Fatalf("exit code %d, stderr:\n%s", code, stderr)
			}
			checkStatsAddUp(t, stderr)
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != len(rows) {
				t.Fatalf("%d lines, %d oracle rows", len(lines), len(rows))
			}
			frames := captureFrames(t, capture)
			pairs := tsharkPairs(t, capture+".pairs.tsv")
			for i, row := range rows {
				if !row.response {
					continue
				}
				responses++
				field := lines[i][strings.LastIndexByte(lines[i], ' ')+1:]
				got := chosenRequests(t, field, i, rows, frames)
				want := pairs[row.frame]
				if agree(got, want, frames) {
					if slices.Contains(got, want.frame) {
						checkTime(t, row.frame, field, want)
					}
					continue
				}
				key := fmt.Sprintf("%s frame %d", name, row.frame)
				found[key] = fmt.Sprintf("httplog %s, tshark %s", frameText(got), frameText([]int{want.frame}))
			}
		})
	}
	for key, what := range found {
		if listed[key] != what {
			t.Errorf("%s: %s; docs/PAIRING.md lists %q", key, what, listed[key])
		}
	}
	for key := range listed {
		if _, ok := found[key]; !ok {
			t.Errorf("docs/PAIRING.md lists %s (%s), which no longer happens", key, listed[key])
		}
	}
	if responses != 172 {
		t.Errorf("compared %d responses, the corpus README promises 172", responses)
	}
}

// corpusRow is what the pairing check needs of an oracle row.
type corpusRow struct {
	frame    int
	response bool
}

func corpusRows(t *testing.T, path string) []corpusRow {
	t.Helper()
	var rows []corpusRow
	for _, c := range tsvRows(t, path) {
		frame, err := strconv.Atoi(c[0])
		if err != nil || len(c) < 7 {
			t.Fatalf("%s: bad row %q", path, c)
		}
		rows = append(rows, corpusRow{frame: frame, response: c[6] == "RESP"})
	}
	return rows
}

// tsharkPair is one row of a .pairs.tsv file.
type tsharkPair struct {
	frame int     // tshark's request frame, 0 for none
	secs  float64 // its time from request to response
}

func tsharkPairs(t *testing.T, path string) map[int]tsharkPair {
	t.Helper()
	pairs := map[int]tsharkPair{}
	for _, c := range tsvRows(t, path) {
		resp, err := strconv.Atoi(c[0])
		if err != nil || len(c) != 3 {
			t.Fatalf("%s: bad row %q", path, c)
		}
		var p tsharkPair
		if c[1] != "" {
			p.frame, _ = strconv.Atoi(c[1])
			p.secs, _ = strconv.ParseFloat(c[2], 64)
		}
		pairs[resp] = p
	}
	return pairs
}

// capturedFrame is what the check needs of a frame of the capture.
type capturedFrame struct {
	ts   int64
	conn pairKey
	seq  uint32
}

// captureFrames decodes every TCP frame of a capture, by frame number.
func captureFrames(t *testing.T, path string) map[int]capturedFrame {
	t.Helper()
	src, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	frames := map[int]capturedFrame{}
	var f frame
	var p packet
	for n := 1; ; n++ {
		err := src.next(&f)
		if err == io.EOF {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		if decodeFrame(f.link, f.data, &p) != vTCP {
			continue
		}
		cf := capturedFrame{ts: f.ts, seq: p.seq}
		makePairKey(netip.AddrPortFrom(addrFrom(p.src), p.sport), netip.AddrPortFrom(addrFrom(p.dst), p.dport), &cf.conn)
		frames[n] = cf
	}
}

// chosenRequests finds the request frames (on the response's connection,
// logged before it) whose time to the response is the line's time field:
// the request httplog chose, or none for "-". Two requests with the same
// time would both be returned.
func chosenRequests(t *testing.T, field string, i int, rows []corpusRow, frames map[int]capturedFrame) []int {
	t.Helper()
	if field == "-" {
		return nil
	}
	if !strings.HasSuffix(field, "ms") {
		t.Fatalf("response line %d ends with %q, not a response time", i+1, field)
	}
	resp := frames[rows[i].frame]
	var got []int
	for _, r := range rows[:i] {
		req := frames[r.frame]
		if r.response || req.conn != resp.conn {
			continue
		}
		rec := record{timing: timed, rt: resp.ts - req.ts}
		if string(appendResponseTime(nil, &rec)) == " "+field {
			got = append(got, r.frame)
		}
	}
	if len(got) == 0 {
		t.Errorf("response frame %d: no request on its connection is %s before it", rows[i].frame, field)
	}
	return got
}

// agree: both paired none, or httplog chose tshark's request or an earlier
// copy of it.
func agree(got []int, want tsharkPair, frames map[int]capturedFrame) bool {
	if want.frame == 0 || len(got) == 0 {
		return want.frame == 0 && len(got) == 0
	}
	w := frames[want.frame]
	for _, g := range got {
		if f := frames[g]; g == want.frame || g < want.frame && f.conn == w.conn && f.seq == w.seq {
			return true
		}
	}
	return false
}

// checkTime: when httplog chose tshark's very frame, the times agree to
// the millisecond. (An earlier copy is timed from itself, so longer.)
func checkTime(t *testing.T, frame int, field string, want tsharkPair) {
	t.Helper()
	msText := strings.TrimSuffix(field, "ms")
	got, err := strconv.ParseFloat(msText, 64)
	if err != nil || math.Abs(got-want.secs*1000) >= 1 {
		t.Errorf("frame %d: %s, tshark %.6fs", frame, field, want.secs)
	}
}

func frameText(frames []int) string {
	if len(frames) == 0 || frames[0] == 0 {
		return "-"
	}
	s := make([]string, len(frames))
	for i, f := range frames {
		s[i] = strconv.Itoa(f)
	}
	return strings.Join(s, ",")
}

// listedDisagreements reads the table of docs/PAIRING.md's corpus section:
// | `capture` | frame | httplog's request | tshark's request | why |
func listedDisagreements(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("docs", "PAIRING.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "## The corpus: where httplog and tshark disagree")
	listed := map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		c := strings.Split(line, "|")
		if len(c) < 6 || !strings.HasPrefix(strings.TrimSpace(c[1]), "`") {
			continue
		}
		key := fmt.Sprintf("%s frame %s", strings.Trim(strings.TrimSpace(c[1]), "`"), strings.TrimSpace(c[2]))
		listed[key] = fmt.Sprintf("httplog %s, tshark %s", strings.TrimSpace(c[3]), strings.TrimSpace(c[4]))
	}
	return listed
}
