package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// jsonFields is the contract of SPEC section 10 as the tests hold events
// to it: every field an event may have, by its path, with its JSON type.
// An event with any other field, a field of another type, or a field
// twice fails parseEvent; the README's field table lists them all.
var jsonFields = map[string]string{
	"@timestamp":                         "string",
	"event.action":                       "string",
	"event.start":                        "string",
	"event.duration":                     "number",
	"source.ip":                          "string",
	"source.port":                        "number",
	"destination.ip":                     "string",
	"destination.port":                   "number",
	"network.transport":                  "string",
	"network.protocol":                   "string",
	"network.type":                       "string",
	"network.direction":                  "string",
	"http.version":                       "string",
	"http.request.method":                "string",
	"http.response.status_code":          "number",
	"http.response.headers.content-type": "string",
	"http.response.body.bytes":           "number",
	"url.original":                       "string",
	"user_agent.original":                "string",
	"httplog.type":                       "string",
	"httplog.start_line":                 "string",
	"httplog.host":                       "string",
	"httplog.content_length":             "string",
	"httplog.request_truncated":          "boolean",
}

// jsonRequired are the fields every event has.
var jsonRequired = []string{"@timestamp", "event.action", "source.ip", "source.port", "destination.ip", "destination.port",
	"network.transport", "network.protocol", "network.type", "network.direction", "httplog.type", "httplog.start_line"}

// jsonTime is the layout of @timestamp and event.start: RFC 3339, UTC,
// milliseconds.
const jsonTime = "2006-01-02T15:04:05.000Z"

// event is a parsed JSON event: its leaves by path, strings as string,
// numbers as json.Number.
type event map[string]any

func (e event) str(path string) string {
	s, _ := e[path].(string)
	return s
}

func (e event) num(path string) (int64, bool) {
	n, ok := e[path].(json.Number)
	if !ok {
		return 0, false
	}
	v, err := n.Int64()
	return v, err == nil
}

// parseEvent holds one line of JSON output to the contract: exactly one
// line, valid UTF-8, one JSON object and nothing after it, no key twice
// in an object, only the fields of jsonFields with their types, the
// required ones present, and values of the right form. It returns the
// leaves by path, or an error that says what is wrong.
func parseEvent(line []byte) (event, error) {
	if len(line) == 0 || bytes.IndexByte(line, '\n') != len(line)-1 {
		return nil, fmt.Errorf("not exactly one line: %q", line)
	}
	if !utf8.Valid(line) {
		return nil, fmt.Errorf("not valid UTF-8: %q", line)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	ev := event{}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object (%v): %q", err, line)
	}
	if err := walkObject(dec, "", ev); err != nil {
		return nil, fmt.Errorf("%v: %q", err, line)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("more than one JSON value on the line: %q", line)
	}
	if err := checkEvent(ev); err != nil {
		return nil, fmt.Errorf("%v: %q", err, line)
	}
	return ev, nil
}

// walkObject reads the members of an object whose '{' was read, putting
// its leaves into ev under prefix.
func walkObject(dec *json.Decoder, prefix string, ev event) error {
	seen := map[string]bool{}
	members := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string) // the decoder checks that a key is a string
		if seen[key] {
			return fmt.Errorf("key %q twice in %q", key, prefix)
		}
		seen[key] = true
		members++
		path := prefix + key
		tok, err = dec.Token()
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case json.Delim:
			if v != '{' {
				return fmt.Errorf("%s is an array", path)
			}
			if err := walkObject(dec, path+".", ev); err != nil {
				return err
			}
			continue
		case string:
			if jsonFields[path] != "string" {
				return fmt.Errorf("%s: a string where the contract has %q", path, jsonFields[path])
			}
		case json.Number:
			if jsonFields[path] != "number" {
				return fmt.Errorf("%s: a number where the contract has %q", path, jsonFields[path])
			}
		case bool:
			if jsonFields[path] != "boolean" || !v {
				return fmt.Errorf("%s: %v where the contract has %q (only ever true)", path, v, jsonFields[path])
			}
		default:
			return fmt.Errorf("%s: %v (%T) is neither a string, a number nor true", path, v, v)
		}
		ev[path] = tok
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return err
	}
	if members == 0 {
		return fmt.Errorf("empty object %q", prefix)
	}
	return nil
}

// checkEvent checks the values of an event: required fields, forms and
// the constants and relations of the contract.
// It is long because it is the whole event contract, field by field.
func checkEvent(ev event) error {
	for _, f := range jsonRequired {
		if _, ok := ev[f]; !ok {
			return fmt.Errorf("no %s", f)
		}
	}
	for _, f := range []string{"@timestamp", "event.start"} {
		if s, ok := ev[f].(string); ok {
			if _, err := time.Parse(jsonTime, s); err != nil {
				return fmt.Errorf("%s %q is not RFC 3339 UTC with milliseconds", f, s)
			}
		}
	}
	for _, side := range []string{"source", "destination"} {
		ip, err := netip.ParseAddr(ev.str(side + ".ip"))
		if err != nil || ip.String() != ev.str(side+".ip") {
			return fmt.Errorf("%s.ip %q is not an address in canonical form", side, ev.str(side+".ip"))
		}
		if port, ok := ev.num(side + ".port"); !ok || port < 0 || port > 65535 {
			return fmt.Errorf("%s.port %v is not a port", side, ev[side+".port"])
		}
		if want := map[bool]string{true: "ipv4", false: "ipv6"}[ip.Is4()]; ev.str("network.type") != want {
			return fmt.Errorf("network.type %q for %s", ev.str("network.type"), ip)
		}
	}
	if ev.str("network.transport") != "tcp" || ev.str("network.protocol") != "http" {
		return fmt.Errorf("network.transport %q, network.protocol %q", ev.str("network.transport"), ev.str("network.protocol"))
	}
	typ := ev.str("httplog.type")
	want, ok := map[string]struct{ action, direction string }{
		"CQ": {"request", "ingress"}, "CR": {"response", "egress"},
		"SQ": {"request", "egress"}, "SR": {"response", "ingress"},
	}[typ]
	if !ok {
		return fmt.Errorf("httplog.type %q", typ)
	}
	if ev.str("event.action") != want.action || ev.str("network.direction") != want.direction {
		return fmt.Errorf("%s with event.action %q, network.direction %q", typ, ev.str("event.action"), ev.str("network.direction"))
	}
	response := want.action == "response"
	for _, f := range []string{"http.response.status_code", "http.response.body.bytes", "event.duration"} {
		if _, ok := ev[f]; ok {
			if _, ok := ev.num(f); !ok {
				return fmt.Errorf("%s %v is not an integer", f, ev[f])
			}
		}
	}
	if code, ok := ev.num("http.response.status_code"); ok && (code < 0 || code > 999) {
		return fmt.Errorf("http.response.status_code %d", code)
	}
	if n, ok := ev.num("http.response.body.bytes"); ok && n < 0 {
		return fmt.Errorf("http.response.body.bytes %d", n)
	}
	_, start := ev["event.start"]
	_, duration := ev["event.duration"]
	if start != duration || (start && !response) {
		return errors.New("event.start and event.duration come together, on a paired response only")
	}
	if !response {
		if _, ok := ev["http.request.method"]; !ok {
			return errors.New("a request without http.request.method")
		}
		for f := range ev {
			if strings.HasPrefix(f, "http.response.") || f == "httplog.content_length" {
				return fmt.Errorf("a request with %s", f)
			}
		}
	} else if _, ok := ev["user_agent.original"]; ok {
		return errors.New("a response with user_agent.original")
	}
	if response && !duration {
		for _, f := range []string{"http.request.method", "url.original", "httplog.host", "httplog.request_truncated"} {
			if _, ok := ev[f]; ok {
				return fmt.Errorf("a response with %s, not paired", f)
			}
		}
	}
	if _, ok := ev["httplog.request_truncated"]; ok && !response {
		return errors.New("a request with httplog.request_truncated")
	}
	if _, ok := ev["http.request.method"]; response && duration && !ok {
		return errors.New("a paired response without its request's http.request.method")
	}
	return nil
}

// textOf is the text line that the values of a JSON event make: the time
// of @timestamp in UTC, the endpoints, the type, the start line and the
// two header values ("-" for a field the event leaves out). An event
// whose textOf equals the text line of the same packet holds every value
// of that line. textOfPaired is the same with -pair: a response's line ends
// in the response time of event.duration, or "-" without one.
func textOf(ev event) string {
	ts, _ := time.Parse(jsonTime, ev.str("@timestamp"))
	dash := func(f string) string {
		if s := ev.str(f); s != "" {
			return s
		}
		return "-"
	}
	f1, f2 := dash("httplog.host"), dash("user_agent.original")
	if ev.str("event.action") == "response" {
		f1, f2 = dash("httplog.content_length"), dash("http.response.headers.content-type")
	}
	return fmt.Sprintf("%s %s#%s %s#%s %s %s %s %s\n", ts.Format("2006-01-02 15:04:05.000"),
		ev.str("source.ip"), ev["source.port"], ev.str("destination.ip"), ev["destination.port"],
		ev.str("httplog.type"), ev.str("httplog.start_line"), f1, f2)
}

func textOfPaired(ev event) string {
	line := textOf(ev)
	if ev.str("event.action") != "response" {
		return line
	}
	rt, ok := ev.num("event.duration")
	if !ok {
		return strings.TrimSuffix(line, "\n") + " -\n"
	}
	sign, us := "", rt/1000
	if us < 0 {
		sign, us = "-", -us
	}
	return fmt.Sprintf("%s %s%d.%03dms\n", strings.TrimSuffix(line, "\n"), sign, us/1000, us%1000)
}

// checkPaired checks that event.start is event.duration before
// @timestamp, both cut to milliseconds.
func checkPaired(ev event) error {
	rt, ok := ev.num("event.duration")
	if !ok {
		return nil
	}
	at, _ := time.Parse(jsonTime, ev.str("@timestamp"))
	start, _ := time.Parse(jsonTime, ev.str("event.start"))
	if d := at.Sub(start) - time.Duration(rt); d <= -time.Millisecond || d >= time.Millisecond {
		return fmt.Errorf("event.start %s is not event.duration %d ns before @timestamp %s", ev.str("event.start"), rt, ev.str("@timestamp"))
	}
	return nil
}

// checkDerived checks the fields an event derives from its start line and
// header values against a derivation of the test's own: the method, the
// target and the version of a request line (METHOD SP TARGET SP HTTP/V),
// the version and status code of a status line, the body bytes of a
// Content-Length of digits. A field that cannot be derived is absent.
func checkDerived(ev event) error {
	line := ev.str("httplog.start_line")
	want := map[string]string{}
	version := func(v string) string {
		v, ok := strings.CutPrefix(v, "HTTP/")
		if !ok || v == "" || len(v) > 8 || strings.Trim(v, "0123456789.") != "" || v[0] == '.' || v[len(v)-1] == '.' {
			return ""
		}
		return v
	}
	if ev.str("event.action") == "request" {
		method, rest, _ := strings.Cut(line, " ")
		want["http.request.method"] = method
		target := rest
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			if tail := rest[i+1:]; tail != "" && (strings.HasPrefix(tail, "HTTP/") || strings.HasPrefix("HTTP/", tail)) {
				target = rest[:i]
				want["http.version"] = version(tail)
			}
		}
		want["url.original"] = target
	} else {
		v, rest, _ := strings.Cut(line, " ")
		want["http.version"] = version(v)
		if len(rest) >= 3 && strings.Trim(rest[:3], "0123456789") == "" && (len(rest) == 3 || rest[3] == ' ') {
			want["http.response.status_code"] = strings.TrimLeft(rest[:3], "0")
			if want["http.response.status_code"] == "" {
				want["http.response.status_code"] = "0"
			}
		}
		if cl := ev.str("httplog.content_length"); cl != "" && len(cl) <= 12 && strings.Trim(cl, "0123456789") == "" {
			n, _ := strconv.ParseInt(cl, 10, 64)
			want["http.response.body.bytes"] = strconv.FormatInt(n, 10)
		}
	}
	for f, w := range want {
		got := ""
		if v, ok := ev[f]; ok {
			got = fmt.Sprint(v)
		}
		if got != w {
			return fmt.Errorf("%s is %q, the start line %q gives %q", f, got, line, w)
		}
	}
	return nil
}

// TestAppendJSON: events of records filled by hand, written out whole, so
// that the field names, nesting and order of the contract are seen; then
// the ill-formed start lines, whose fields that cannot be derived are
// left out.
// It is long because it is a table of records and their events.
// startMsg is the message parseMessage makes of an HTTP start of type t
// whose start line is start, with the header values f1 and f2 as given
// (raw bytes that a header block could not carry).
func startMsg(t lineType, start, f1, f2 string) message {
	kind := request
	if t == typeCR || t == typeSR {
		kind = response
	}
	var m message
	parseMessage(kind, []byte(start), &m, false)
	if f1 != "" {
		m.field1 = []byte(f1)
	}
	if f2 != "" {
		m.field2 = []byte(f2)
	}
	return m
}

func TestAppendJSON(t *testing.T) {
	ts := time.Date(2019, 9, 1, 5, 16, 51, 2999999, time.UTC).UnixNano() // .002999: cut, not rounded
	src4, dst4 := netip.MustParseAddrPort("223.39.188.71:50905"), netip.MustParseAddrPort("10.140.0.2:80")
	tests := []struct {
		name string
		rec  record
		want string
	}{
		{"request", record{ts: ts, src: src4, dst: dst4, typ: typeCQ,
			msg: startMsg(typeCQ, "GET /a?b=1 HTTP/1.1", "www.example.com", `curl/8.0 "x" \ é`)},
			`{"@timestamp":"2019-09-01T05:16:51.002Z","event":{"action":"request"},` +
				`"source":{"ip":"223.39.188.71","port":50905},"destination":{"ip":"10.140.0.2","port":80},` +
				`"network":{"transport":"tcp","protocol":"http","type":"ipv4","direction":"ingress"},` +
				`"http":{"version":"1.1","request":{"method":"GET"}},"url":{"original":"/a?b=1"},` +
				`"user_agent":{"original":"curl/8.0 \"x\" \\\\ é"},` +
				`"httplog":{"type":"CQ","start_line":"GET /a?b=1 HTTP/1.1","host":"www.example.com"}}`},
		{"response", record{ts: ts, src: dst4, dst: src4, typ: typeCR,
			msg: startMsg(typeCR, "HTTP/1.1 302 Found", "0", "text/html; charset=UTF-8")},
			`{"@timestamp":"2019-09-01T05:16:51.002Z","event":{"action":"response"},` +
				`"source":{"ip":"10.140.0.2","port":80},"destination":{"ip":"223.39.188.71","port":50905},` +
				`"network":{"transport":"tcp","protocol":"http","type":"ipv4","direction":"egress"},` +
				`"http":{"version":"1.1","response":{"status_code":302,"headers":{"content-type":"text/html; charset=UTF-8"},"body":{"bytes":0}}},` +
				`"httplog":{"type":"CR","start_line":"HTTP/1.1 302 Found","content_length":"0"}}`},
		{"paired response, IPv6, SR", record{ts: ts, typ: typeSR,
			src: netip.MustParseAddrPort("[2001:db8::2]:8080"), dst: netip.MustParseAddrPort("[2001:db8::1]:40000"),
			msg:    startMsg(typeSR, "HTTP/2 200", "", ""),
			timing: timed, rt: 18341000,
			req: pairedRequest{method: []byte("POST"), target: []byte("/login?password=x"), host: []byte("h\x00")}},
			`{"@timestamp":"2019-09-01T05:16:51.002Z","event":{"action":"response","start":"2019-09-01T05:16:50.984Z","duration":18341000},` +
				`"source":{"ip":"2001:db8::2","port":8080},"destination":{"ip":"2001:db8::1","port":40000},` +
				`"network":{"transport":"tcp","protocol":"http","type":"ipv6","direction":"ingress"},` +
				`"http":{"version":"2","request":{"method":"POST"},"response":{"status_code":200}},"url":{"original":"/login?password=x"},` +
				`"httplog":{"type":"SR","start_line":"HTTP/2 200","host":"h\\x00"}}`},
		{"paired response, its request's target not kept", record{ts: ts, src: dst4, dst: src4, typ: typeCR,
			msg:    startMsg(typeCR, "HTTP/1.1 204 No Content", "", ""),
			timing: timed, rt: 1000,
			req: pairedRequest{method: []byte("GET"), host: []byte("www.example.com"), truncated: true}},
			`{"@timestamp":"2019-09-01T05:16:51.002Z","event":{"action":"response","start":"2019-09-01T05:16:51.002Z","duration":1000},` +
				`"source":{"ip":"10.140.0.2","port":80},"destination":{"ip":"223.39.188.71","port":50905},` +
				`"network":{"transport":"tcp","protocol":"http","type":"ipv4","direction":"egress"},` +
				`"http":{"version":"1.1","request":{"method":"GET"},"response":{"status_code":204}},` +
				`"httplog":{"type":"CR","start_line":"HTTP/1.1 204 No Content","host":"www.example.com","request_truncated":true}}`},
		{"escapes, IPv4-mapped IPv6, SQ", record{ts: ts, typ: typeSQ,
			src: netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"), dst: netip.MustParseAddrPort("[::ffff:10.0.0.2]:80"),
			msg: startMsg(typeSQ, "GET /\x00\"\\\u2028\xff HTTP/1.1", "", "")},
			`{"@timestamp":"2019-09-01T05:16:51.002Z","event":{"action":"request"},` +
				`"source":{"ip":"::ffff:10.0.0.1","port":1},"destination":{"ip":"::ffff:10.0.0.2","port":80},` +
				`"network":{"transport":"tcp","protocol":"http","type":"ipv6","direction":"egress"},` +
				`"http":{"version":"1.1","request":{"method":"GET"}},"url":{"original":"/\\x00\"\\\\\\xe2\\x80\\xa8\\xff"},` +
				`"httplog":{"type":"SQ","start_line":"GET /\\x00\"\\\\\\xe2\\x80\\xa8\\xff HTTP/1.1"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, day := appendJSON(nil, &tt.rec, newClock(time.UTC), nil)
			if string(got) != tt.want+"\n" || day != 20190901 {
				t.Errorf("day %d\n got %s\nwant %s", day, got, tt.want)
			}
			if _, err := parseEvent(got); err != nil {
				t.Error(err)
			}
		})
	}
	// The day of the file is the local day, as for a text line; the
	// timestamp stays UTC.
	if seoul, err := time.LoadLocation("Asia/Seoul"); err == nil {
		rec := tests[0].rec
		rec.ts = time.Date(2019, 9, 1, 15, 0, 0, 0, time.UTC).UnixNano()
		got, day := appendJSON(nil, &rec, newClock(seoul), nil)
		if day != 20190902 || !bytes.HasPrefix(got, []byte(`{"@timestamp":"2019-09-01T15:00:00.000Z"`)) {
			t.Errorf("00:00 in Seoul: day %d, %s", day, got)
		}
	}
}

// TestJSONIllFormed: a start line that is not well formed gives an event
// without the fields it cannot give, and with the line as sent in
// httplog.start_line; a Content-Length that is not a number gives no
// http.response.body.bytes.
func TestJSONIllFormed(t *testing.T) {
	tests := []struct {
		typ    lineType
		start  string
		f1, f2 string
		want   map[string]string // fields derived; "" = absent
	}{
		{typeCQ, "GET ", "", "", map[string]string{"http.request.method": "GET", "url.original": "", "http.version": ""}},
		{typeCQ, "GET /a?b=1", "", "", map[string]string{"url.original": "/a?b=1", "http.version": ""}},
		{typeCQ, "GET /a HTT", "", "", map[string]string{"url.original": "/a", "http.version": ""}},
		{typeCQ, "GET /a HTTP/", "", "", map[string]string{"url.original": "/a", "http.version": ""}},
		{typeCQ, "GET /a HTTP/1.", "", "", map[string]string{"url.original": "/a", "http.version": ""}},
		{typeCQ, "GET /a b HTTP/1.0", "", "", map[string]string{"url.original": "/a b", "http.version": "1.0"}},
		{typeCQ, "GET /a HTTP/1.1 x", "", "", map[string]string{"url.original": "/a HTTP/1.1 x", "http.version": ""}},
		{typeCQ, "GET  HTTP/1.1", "", "", map[string]string{"url.original": "", "http.version": "1.1"}},
		{typeCR, "HTTP/1.1", "", "", map[string]string{"http.version": "1.1", "http.response.status_code": ""}},
		{typeCR, "HTTP/", "x", "", map[string]string{"http.version": "", "http.response.status_code": "", "http.response.body.bytes": ""}},
		{typeCR, "HTTP/1.1 2000 OK", "12, 12", "", map[string]string{"http.response.status_code": "", "http.response.body.bytes": ""}},
		{typeCR, "HTTP/1.1 20", "-1", "", map[string]string{"http.response.status_code": "", "http.response.body.bytes": ""}},
		{typeCR, "HTTP/1.1 2x0 OK", "0x10", "", map[string]string{"http.response.status_code": "", "http.response.body.bytes": ""}},
		{typeCR, "HTTP/1.1 200", "007", "", map[string]string{"http.response.status_code": "200", "http.response.body.bytes": "7"}},
		{typeCR, "HTTP/1.1  200 OK", "99999999999999999999", "", map[string]string{"http.response.status_code": "", "http.response.body.bytes": ""}},
		{typeSR, "HTTP/x 404 Not Found", "999999999999", "a", map[string]string{"http.version": "", "http.response.status_code": "404", "http.response.body.bytes": "999999999999"}},
		{typeSR, "HTTP/1.1 200 OK", "1000000000000", "a", map[string]string{"http.response.body.bytes": ""}}, // 13 digits: not taken for a length
	}
	for _, tt := range tests {
		rec := record{src: netip.MustParseAddrPort("192.0.2.1:1"), dst: netip.MustParseAddrPort("192.0.2.2:80"), typ: tt.typ,
			msg: startMsg(tt.typ, tt.start, tt.f1, tt.f2)}
		line, _ := appendJSON(nil, &rec, newClock(time.UTC), nil)
		ev, err := parseEvent(line)
		if err != nil {
			t.Errorf("%q: %v", tt.start, err)
			continue
		}
		if ev.str("httplog.start_line") != tt.start {
			t.Errorf("%q: httplog.start_line %q", tt.start, ev.str("httplog.start_line"))
		}
		for f, w := range tt.want {
			got := ""
			if v, ok := ev[f]; ok {
				got = fmt.Sprint(v)
			}
			if got != w {
				t.Errorf("%q: %s = %q, want %q", tt.start, f, got, w)
			}
		}
		if err := checkDerived(ev); err != nil {
			t.Errorf("%q: %v", tt.start, err)
		}
	}
}

// TestParseEventRefuses: the checker of the contract refuses what breaks
// it, so that the tests that use it can fail.
func TestParseEventRefuses(t *testing.T) {
	rec := record{src: netip.MustParseAddrPort("192.0.2.1:1"), dst: netip.MustParseAddrPort("192.0.2.2:80"), typ: typeCQ,
		msg: startMsg(typeCQ, "GET / HTTP/1.1", "", "")}
	good, _ := appendJSON(nil, &rec, newClock(time.UTC), nil)
	if _, err := parseEvent(good); err != nil {
		t.Fatal(err)
	}
	edits := map[string][2]string{
		"a key twice":       {`"type":"CQ"`, `"type":"CQ","type":"CQ"`},
		"an unknown field":  {`"type":"CQ"`, `"type":"CQ","typo":"x"`},
		"a field's case":    {`"source":`, `"Source":`},
		"a number as text":  {`"port":80`, `"port":"80"`},
		"an empty object":   {`"event":{"action":"request"}`, `"event":{"action":"request"},"url":{}`},
		"no @timestamp":     {`"@timestamp"`, `"@timestamp_"`},
		"local time":        {`.000Z`, `.000+09:00`},
		"a wrong direction": {`"ingress"`, `"egress"`},
		"two lines":         {`}}`, "}}\n"},
		"two values":        {`}}`, `}}{}`},
		"not UTF-8":         {`GET /`, "GET /\xff"},
		"a mapped address":  {`"ip":"192.0.2.1"`, `"ip":"::ffff:192.0.2.1"`},
		"a port too large":  {`"port":1`, `"port":65536`},
		"a null":            {`"port":1`, `"port":null`},
		"an array":          {`"port":1`, `"port":[1]`},
		"a request cut":     {`"type":"CQ"`, `"type":"CQ","request_truncated":true`},
		"a false":           {`"type":"CQ"`, `"type":"CQ","request_truncated":false`},
	}
	refuse := func(good []byte, edits map[string][2]string) {
		t.Helper()
		for name, e := range edits {
			bad := strings.Replace(string(good), e[0], e[1], 1)
			if bad == string(good) {
				t.Fatalf("%s: %q not in %s", name, e[0], good)
			}
			if _, err := parseEvent([]byte(bad)); err == nil {
				t.Errorf("%s: parseEvent accepts %s", name, bad)
			}
		}
	}
	refuse(good, edits)
	// A response: its request's fields only when paired, and then its method.
	rec.typ, rec.msg = typeCR, startMsg(typeCR, "HTTP/1.1 200 OK", "", "")
	good, _ = appendJSON(nil, &rec, newClock(time.UTC), nil)
	refuse(good, map[string][2]string{
		"unpaired, with a method": {`"version":"1.1"`, `"version":"1.1","request":{"method":"GET"}`},
		"unpaired, with a URI":    {`"httplog"`, `"url":{"original":"/"},"httplog"`},
		"unpaired, with a Host":   {`"type":"CR"`, `"type":"CR","host":"h"`},
		"unpaired, cut":           {`"type":"CR"`, `"type":"CR","request_truncated":true`},
	})
	rec.timing, rec.req.method = timed, []byte("GET")
	good, _ = appendJSON(nil, &rec, newClock(time.UTC), nil)
	if _, err := parseEvent(good); err != nil {
		t.Fatal(err)
	}
	refuse(good, map[string][2]string{"paired, without a method": {`"request":{"method":"GET"},`, ``}})
}

// TestJSONMatchesText: every capture of the corpus, and the seed's, read
// in both formats, without and with -redact, and with -pair (without and
// with -redact): one event per text line, in the same order, each holding
// to the contract, and the values of each event make its text line
// exactly (textOf, textOfPaired, the response time from event.duration),
// while the fields it derives agree with its start line (checkDerived),
// event.start with event.duration (checkPaired), and a paired response's
// request fields with those of the request event it was timed from
// (checkPairedRequests), which are its CQ or SQ line's.
// It is long because it runs every capture in both formats and compares each event with its line.
func TestJSONMatchesText(t *testing.T) {
	root := filepath.Join(corpusDir(t), "pcaps")
	captures := append(corpusCaptures(t), filepath.Join("testdata", "seed.pcap"))
	variants := [][]string{{"-redact=false"}, {"-redact"}, {"-pair"}, {"-pair", "-redact"}}
	events, paired, withTexts := 0, 0, 0
	for _, capture := range captures {
		name, err := filepath.Rel(root, capture)
		if err != nil || strings.HasPrefix(name, "..") {
			name = capture
		}
		t.Run(name, func(t *testing.T) {
			args := []string{"-r", capture, "-p", "any", "-d", "-"}
			var frameTs []int64 // the capture time of each line's frame, when the oracle says which frame
			if strings.HasSuffix(capture, "seed.pcap") {
				args = append(args, "-local", "10.140.0.2") // CQ, CR, SQ and SR
			} else {
				frames := captureFrames(t, capture)
				for _, row := range corpusRows(t, capture+".expected.tsv") {
					frameTs = append(frameTs, frames[row.frame].ts)
				}
			}
			for _, variant := range variants {
				what := strings.Join(variant, " ")
				pair := variant[0] == "-pair"
				text, stderr, code := runPipeline(t, append(args, variant...)...)
				if code != 0 {
					t.Fatalf("text %s: exit %d: %s", what, code, stderr)
				}
				js, stderr, code := runPipeline(t, append(append(args, variant...), "-format", "json")...)
				if code != 0 {
					t.Fatalf("json %s: exit %d: %s", what, code, stderr)
				}
				tl, jl := strings.SplitAfter(text, "\n"), strings.SplitAfter(js, "\n")
				if len(tl) != len(jl) {
					t.Fatalf("%s: %d text lines, %d JSON lines", what, len(tl)-1, len(jl)-1)
				}
				evs := make([]event, len(jl)-1)
				for i := range jl[:len(jl)-1] {
					ev, err := parseEvent([]byte(jl[i]))
					if err != nil {
						t.Errorf("%s, line %d: %v", what, i+1, err)
						continue
					}
					evs[i] = ev
					got := textOf(ev)
					if pair {
						got = textOfPaired(ev)
						paired += strings.Count(got, "ms\n")
					}
					if got != tl[i] {
						t.Errorf("%s, line %d: the event's values make\n%q\nthe text line is\n%q", what, i+1, got, tl[i])
					}
					if err := checkPaired(ev); err != nil {
						t.Errorf("%s, line %d: %v", what, i+1, err)
					}
					if err := checkDerived(ev); err != nil {
						t.Errorf("%s, line %d: %v", what, i+1, err)
					}
					events++
				}
				if pair {
					if len(frameTs) > 0 && len(frameTs) != len(evs) {
						t.Fatalf("%s: %d events, %d oracle rows", what, len(evs), len(frameTs))
					}
					withTexts += checkPairedRequests(t, what, evs, frameTs)
				}
			}
		})
	}
	// Each row of the corpus oracle (360) and each seed line (4), without
	// and with -redact, and with -pair, without and with -redact.
	if events != 4*(360+4) || paired == 0 || withTexts == 0 {
		t.Errorf("compared %d events (%d paired, %d with their request's texts), want %d, some paired", events, paired, withTexts, 4*(360+4))
	}
}

// checkPairedRequests checks the request fields of each paired response
// event (http.request.method, url.original, httplog.host) against those
// of the request event it answers: an earlier request event of the same
// connection whose @timestamp is the response's event.start (the same
// instant cut to milliseconds the same way) and, when frameTs gives the
// events' capture times, whose time is the response's less event.duration
// exactly. A response with httplog.request_truncated leaves url.original
// out, which is right only if the target and Host (escaped, at least as
// long as the bytes kept) do not fit a slot; its Host is the request's if
// it has one. It returns how many responses carried their request's texts
// whole.
func checkPairedRequests(t *testing.T, what string, evs []event, frameTs []int64) int {
	t.Helper()
	whole := 0
	conn := func(ev event, reverse bool) string {
		a, b := fmt.Sprint(ev["source.ip"], "#", ev["source.port"]), fmt.Sprint(ev["destination.ip"], "#", ev["destination.port"])
		if reverse {
			a, b = b, a
		}
		return a + " " + b
	}
	for i, resp := range evs {
		rt, ok := resp.num("event.duration")
		if !ok {
			continue
		}
		var found []event
		for j, req := range evs[:i] {
			if req == nil || req.str("event.action") != "request" || conn(req, false) != conn(resp, true) ||
				req.str("@timestamp") != resp.str("event.start") || frameTs != nil && frameTs[j] != frameTs[i]-rt {
				continue
			}
			found = append(found, req)
		}
		if len(found) == 0 {
			t.Errorf("%s, line %d: no request event on its connection at %s", what, i+1, resp.str("event.start"))
			continue
		}
		req := found[0]
		for _, other := range found[1:] {
			for _, f := range []string{"http.request.method", "url.original", "httplog.host"} {
				if other.str(f) != req.str(f) {
					t.Fatalf("%s, line %d: requests at %s that differ in %s: the test cannot tell which was paired", what, i+1, resp.str("event.start"), f)
				}
			}
		}
		fields := []string{"http.request.method", "url.original", "httplog.host"}
		if _, cut := resp["httplog.request_truncated"]; cut {
			if len(req.str("url.original"))+len(req.str("httplog.host")) <= pairTextSize {
				t.Errorf("%s, line %d: request texts left out, but %q and %q fit a slot", what, i+1, req.str("url.original"), req.str("httplog.host"))
			}
			if _, ok := resp["url.original"]; ok {
				t.Errorf("%s, line %d: request texts left out, yet url.original %q", what, i+1, resp.str("url.original"))
			}
			fields = []string{"http.request.method"}
			if _, ok := resp["httplog.host"]; ok {
				fields = append(fields, "httplog.host")
			}
		} else {
			whole++
		}
		for _, f := range fields {
			if resp[f] != req[f] {
				t.Errorf("%s, line %d: %s %q, its request's is %q", what, i+1, f, resp.str(f), req.str(f))
			}
		}
	}
	return whole
}

// TestFormatFiles: -format json writes the same files with .json names,
// and the start message and -check name them.
func TestFormatFiles(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join("testdata", "seed.pcap")
	_, stderr, code := runPipeline(t, "-r", seed, "-local", "10.140.0.2", "-d", dir, "-format", "json", "-log_split")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, ", JSON events, lines to "+dir+"/http-{CQ,CR,SQ,SR}-YYYYMMDD.json") {
		t.Errorf("the start message does not name the JSON files:\n%s", stderr)
	}
	names := logFileNames(t, dir)
	for _, typ := range []string{"CQ", "CR", "SQ", "SR"} {
		name := "http-" + typ + "-20190901.json"
		if !names[name] {
			t.Errorf("no %s in %v", name, names)
			continue
		}
		b := []byte(readFile(t, filepath.Join(dir, name)))
		ev, err := parseEvent(b)
		if err != nil || ev.str("httplog.type") != typ {
			t.Errorf("%s: %v %v", name, ev, err)
		}
	}
	if len(names) != 4 {
		t.Errorf("files %v, want the four of one day", names)
	}
	// One file a day, beside the text format's: formats never mix.
	one := t.TempDir()
	for _, format := range []string{"json", "text"} {
		if _, stderr, code := runPipeline(t, "-r", seed, "-d", one, "-format", format); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	}
	if names := logFileNames(t, one); len(names) != 2 || !names["http-20190901.json"] || !names["http-20190901.log"] {
		t.Errorf("files %v, want http-20190901.json and http-20190901.log", names)
	}
	for _, l := range strings.SplitAfter(readFile(t, filepath.Join(one, "http-20190901.json")), "\n") {
		if _, err := parseEvent([]byte(l)); l != "" && err != nil {
			t.Error(err)
		}
	}
	var out, errOut bytes.Buffer
	run([]string{"-check", "-r", seed, "-d", dir, "-format", "json", "-redact"}, envOf(nil), &out, &errOut)
	want := "httplog: configuration OK: file " + seed + ", ports 80, snaplen 1560, 1 parser(s), JSON events, redacting " +
		strconv.Itoa(len(strings.Split(defaultRedactParams, ","))) + " query parameter names and user:password@, lines to " + dir + "/http-YYYYMMDD.json\n"
	if out.String() != want {
		t.Errorf("-check says\n%q\nwant\n%q", out.String(), want)
	}
}

// TestReadmeFields: the README's field table has a row for every field of
// the contract, with its type.
func TestReadmeFields(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for f, typ := range jsonFields {
		row := "| `" + f + "` | " + typ + " |"
		if !bytes.Contains(readme, []byte(row)) {
			t.Errorf("README.md has no row starting %q", row)
		}
	}
}

// FuzzEvent feeds hostile payloads through the real packet path (the
// reader's handle and batch, the parser's batch) in every format: an HTTP
// start makes exactly one line in each, anything else none; the text
// line is one line of valid UTF-8 without control bytes; the JSON line
// holds to the contract (parseEvent), its values make the text line of
// the same format's redaction exactly (textOf), and its derived fields
// agree with its start line (checkDerived).
// It is long because it holds its seeds, each with a comment, and the properties it checks.
func FuzzEvent(f *testing.F) {
	f.Add([]byte(getReq), false)
	f.Add([]byte("GET /\x00\x1b[31m\\\xff\"x\" HTTP/1.1\r\nHost: a\rb\r\nUser-Agent: \xc3\"\r\n"), false)
	f.Add([]byte("HTTP/1.1 200 OK\nContent-Length:\t\t\nContent-Type: \xe2\x82"), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0012\r\nContent-Type: a\"b\\c\r\n\r\n"), true)
	f.Add([]byte("HTTP/9 999"), true)
	f.Add([]byte("HTTP/"), false)
	f.Add([]byte("CONNECT host:25 / HTTP/1.0\r\n\r\n"), false)
	f.Add([]byte("GET /\u2028x\u0085 HTTP/1.1\r\nHost: \u202eevil\u2069\r\nUser-Agent: \u009b31m\r\n"), false)
	f.Add([]byte("GET http://u:p@h/?token=1&%74oken=2;sig=3#access_token=4 HTTP/1.1\r\n"), false)
	f.Add([]byte("GET /a?token=cut-by-the-snap-len"), false)
	for _, c := range redactCases {
		f.Add([]byte(c.line+"\r\nHost: h\r\n\r\n"), false)
	}
	addCorpusSeeds(f, func(link int, frame []byte) {
		var p packet
		if decodeFrame(link, frame, &p) == vTCP && httpStart(p.payload) != notHTTP {
			f.Add(append([]byte(nil), p.payload...), httpStart(p.payload) == response)
		}
	})
	local := &localSet{prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.2/32")}}
	paths := map[string]*packetPath{}
	for name, form := range benchFormats {
		paths[name] = newPacketPath(local, form)
	}
	f.Fuzz(func(t *testing.T, payload []byte, swap bool) {
		if len(payload) > 60000 {
			return // more than one IPv4 packet holds
		}
		src, dst := "192.0.2.1", "198.51.100.2"
		if swap {
			src, dst = dst, src
		}
		frame := ipv4HTTP(src, dst, 40000, 80, string(payload))
		lines := map[string]string{}
		for name, pp := range paths {
			lines[name] = string(pp.run(frame))
		}
		if httpStart(payload) == notHTTP {
			for name, l := range lines {
				if l != "" {
					t.Fatalf("%s: a line for a packet that is no HTTP start: %q", name, l)
				}
			}
			return
		}
		for _, name := range []string{"text", "text-redact"} {
			l := lines[name]
			if strings.Count(l, "\n") != 1 || !strings.HasSuffix(l, "\n") || !utf8.ValidString(l) {
				t.Fatalf("%s: not one line of UTF-8: %q", name, l)
			}
			if i := strings.IndexFunc(l[:len(l)-1], func(r rune) bool { return r < 0x20 || r == 0x7f || strings.ContainsRune(lineBreakers, r) }); i >= 0 {
				t.Fatalf("%s: a control byte, line break or bidi control at byte %d of %q", name, i, l)
			}
		}
		for _, name := range []string{"json", "json-redact"} {
			ev, err := parseEvent([]byte(lines[name]))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			text := lines[strings.Replace(name, "json", "text", 1)]
			if got := textOf(ev); got != text {
				t.Fatalf("%s: the event makes\n%q\nthe text line is\n%q", name, got, text)
			}
			if err := checkDerived(ev); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	})
}
