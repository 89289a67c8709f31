package main

// A log line: its record (what the parser found in a packet), the type
// CQ/CR/SQ/SR, the clock that dates it, and the text format, with the
// escaping that the JSON format (json.go) shares. Formatting appends into
// the caller's buffer and allocates nothing.

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// lineType is the TYPE column of a log line.
type lineType uint8

const (
	typeCQ lineType = iota // a client's request to a local server
	typeCR                 // a local server's response to a client
	typeSQ                 // a local client's request to a remote server
	typeSR                 // a remote server's response to a local client
	numTypes
)

var typeNames = [numTypes]string{"CQ", "CR", "SQ", "SR"}

func (t lineType) String() string { return typeNames[t] }

// classify names a line by its direction and by whether the server
// endpoint (the destination of a request, the source of a response) is
// one of this host's addresses.
func classify(kind msgKind, serverLocal bool) lineType {
	switch {
	case kind == request && serverLocal:
		return typeCQ
	case kind == request:
		return typeSQ
	case serverLocal:
		return typeCR
	}
	return typeSR
}

// record is one log line before formatting.
type record struct {
	ts       int64 // capture time, Unix nanoseconds
	src, dst netip.AddrPort
	typ      lineType
	msg      message
	timing   timing        // with -pair, a response's time field (pairing.go)
	rt       int64         // response time in nanoseconds, when timing is timed
	req      pairedRequest // with -pair, on a paired response: its request's texts
}

// pairedRequest is what a paired response's record carries of its
// request's text, for the JSON event (http.request.method, url.original,
// httplog.host), so that each response event stands alone as a
// transaction; event.start and event.duration come from timing and rt.
// With -pair and -format json, pairWorker.time fills it from the pairing
// table's copy (pairtext.go). The slices must stay valid until the record
// is formatted.
type pairedRequest struct {
	method    []byte // as sent
	target    []byte // the request target (URI) as sent, redacted already with -redact
	host      []byte // the Host header's value as sent, nil if absent
	truncated bool   // the target, or the target and the Host, were not kept: left out, not absent
}

// clock formats capture times in one location, remembering the text of
// the last second: packets arrive in bursts within a second, so most lines
// pay only for the milliseconds. Each parser goroutine owns one.
type clock struct {
	loc  *time.Location
	sec  int64
	text []byte // "2006-01-02 15:04:05" of sec
	day  uint32 // YYYYMMDD of sec in loc
	// The JSON format's time of one second: "2006-01-02T15:04:05" in UTC.
	utcSec  int64
	utcText []byte
}

func newClock(loc *time.Location) *clock {
	return &clock{loc: loc, sec: -1 << 63, text: make([]byte, 0, 32), utcSec: -1 << 63, utcText: make([]byte, 0, 32)}
}

// at returns the date and time text of the second holding ts (Unix
// nanoseconds), the milliseconds, and the local day as YYYYMMDD.
func (c *clock) at(ts int64) (text []byte, ms int, day uint32) {
	sec, ms := splitTime(ts)
	if sec != c.sec {
		t := time.Unix(sec, 0).In(c.loc)
		c.sec = sec
		c.text = t.AppendFormat(c.text[:0], time.DateTime)
		y, m, d := t.Date()
		c.day = uint32(y*10000 + int(m)*100 + d)
	}
	return c.text, ms, c.day
}

// splitTime cuts Unix nanoseconds into seconds and milliseconds (cut,
// not rounded; a time before 1970 counts its milliseconds down too).
func splitTime(ts int64) (sec int64, ms int) {
	sec, ns := ts/1e9, ts%1e9
	if ns < 0 {
		sec, ns = sec-1, ns+1e9
	}
	return sec, int(ns / 1e6)
}

// appendUTC appends ts as RFC 3339 in UTC with milliseconds
// (2019-09-01T05:16:51.002Z), remembering the text of the last second.
func (c *clock) appendUTC(b []byte, ts int64) []byte {
	sec, ms := splitTime(ts)
	if sec != c.utcSec {
		c.utcSec = sec
		c.utcText = time.Unix(sec, 0).UTC().AppendFormat(c.utcText[:0], "2006-01-02T15:04:05")
	}
	b = append(b, c.utcText...)
	return append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// appendLine appends the text line of r, with its '\n', and returns the
// extended buffer and the line's local day (YYYYMMDD), which picks its file.
// With red, the request target of a request line is redacted.
func appendLine(b []byte, r *record, c *clock, red *redactor) ([]byte, uint32) {
	text, ms, day := c.at(r.ts)
	b = append(b, text...)
	b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), ' ')
	b = appendEndpoint(b, r.src)
	b = append(b, ' ')
	b = appendEndpoint(b, r.dst)
	b = append(b, ' ')
	b = append(b, r.typ.String()...)
	b = append(b, ' ')
	b = appendStartLine(b, r, red, false)
	b = append(b, ' ')
	b = appendField(b, r.msg.field1)
	b = append(b, ' ')
	b = appendField(b, r.msg.field2)
	if r.timing != untimed {
		b = appendResponseTime(b, r)
	}
	return append(b, '\n'), day
}

// appendEndpoint writes ADDR#PORT; netip writes IPv6 in RFC 5952 form.
func appendEndpoint(b []byte, ap netip.AddrPort) []byte {
	b = ap.Addr().AppendTo(b)
	b = append(b, '#')
	return strconv.AppendUint(b, uint64(ap.Port()), 10)
}

// appendField writes a header value, or "-" for one absent or empty.
func appendField(b, v []byte) []byte {
	if len(v) == 0 {
		return append(b, '-')
	}
	return appendEscaped(b, v)
}

const hexDigits = "0123456789abcdef"

// plain marks the bytes appendEscaped copies as they are without a second
// look: printable ASCII but the backslash. plainJSON leaves out the
// double quote too, which a JSON string escapes.
var plain, plainJSON = func() (t, j [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '\\'
		j[c] = t[c] && c != '"'
	}
	return t, j
}()

// appendEscaped copies s, writing every control byte (0x00–0x1f, 0x7f),
// every byte that is not part of valid UTF-8, and every byte of a character
// that breaks or reorders lines (breaksLine) as \xNN, and a backslash as
// \\, so that a log line is always exactly one line of valid UTF-8.
func appendEscaped(b, s []byte) []byte {
	return appendEscapedAs(b, s, false)
}

// appendEscapedAs is appendEscaped, or, with json, the same text encoded
// as the inside of a JSON string: every backslash of the escaped text
// doubled (\xNN is written \\xNN) and a double quote written \". Decoding
// the JSON string gives the text format's escaped form exactly, and no
// byte that JSON must escape is left (the escaped form holds no control
// byte).
func appendEscapedAs(b, s []byte, json bool) []byte {
	ok, bs := &plain, "\\"
	if json {
		ok, bs = &plainJSON, "\\\\"
	}
	for i := 0; i < len(s); {
		start := i
		for i < len(s) && ok[s[i]] { // the common case: a run of plain ASCII
			i++
		}
		b = append(b, s[start:i]...)
		if i == len(s) {
			break
		}
		c := s[i]
		switch {
		case c == '\\':
			b = append(b, bs...)
			b = append(b, bs...)
			i++
		case c == '"': // json only
			b = append(b, '\\', '"')
			i++
		case c < utf8.RuneSelf:
			b = append(b, bs...)
			b = append(b, 'x', hexDigits[c>>4], hexDigits[c&0xf])
			i++
		default:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n <= 1 {
				n = 1 // not valid UTF-8: this byte alone
			} else if !breaksLine(r) {
				b = append(b, s[i:i+n]...)
				i += n
				continue
			}
			for _, c := range s[i : i+n] {
				b = append(b, bs...)
				b = append(b, 'x', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i += n
		}
	}
	return b
}

// breaksLine reports whether r, a valid character beyond ASCII, is one
// that common readers take as a line break or that reorders the text
// around it: the C1 controls U+0080–U+009F (U+0085 is NEL, a line break
// for Python's splitlines), U+2028 LINE SEPARATOR, U+2029 PARAGRAPH
// SEPARATOR, and the bidi controls U+202A–U+202E and U+2066–U+2069, which
// make a terminal or editor show a line's text out of order.
func breaksLine(r rune) bool {
	return r <= 0x9f || 0x2028 <= r && r <= 0x202e || 0x2066 <= r && r <= 0x2069
}
