package main

// The JSON format (-format json): one object per line, its fields named
// after Elastic Common Schema where ECS has a name, the rest under
// "httplog". It is written from the same record as the text line, by hand
// into the caller's buffer (no encoding/json, no allocation), and its
// strings are the text format's escaped form, JSON-encoded
// (appendEscapedAs).

import (
	"bytes"
	"net/netip"
	"strconv"
)

// lineFormat is how the parsers write records: text or JSON, with or
// without redaction. The parsers share it, read-only.
type lineFormat struct {
	json   bool
	redact *redactor // nil: request targets as sent
}

// append appends the line of r and returns the buffer and the line's
// local day (YYYYMMDD), which picks its file, whatever the format.
func (f *lineFormat) append(b []byte, r *record, c *clock) ([]byte, uint32) {
	if f.json {
		return appendJSON(b, r, c, f.redact)
	}
	return appendLine(b, r, c, f.redact)
}

// splitRequest finds the request target of a request line: after the
// method and its space, up to the space before the version (HTTP/…, or
// the start of it, cut by the snap length), or to the end of the line.
// A line with no space (not one httpStart lets through) has an empty
// target at its end.
func splitRequest(line []byte) (start, end int) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return len(line), len(line)
	}
	start, end = sp+1, len(line)
	if last := bytes.LastIndexByte(line[start:], ' '); last >= 0 {
		if tail := line[start+last+1:]; len(tail) > 0 && (bytes.HasPrefix(tail, httpSlash) || bytes.HasPrefix(httpSlash, tail)) {
			end = start + last
		}
	}
	return start, end
}

var httpSlash = []byte("HTTP/")

// httpVersion returns the version of "HTTP/1.1" ("1.1"), or nil unless it
// is digits with dots between them (HTTP/2 gives "2").
func httpVersion(s []byte) []byte {
	if !bytes.HasPrefix(s, httpSlash) {
		return nil
	}
	v := s[len(httpSlash):]
	if len(v) == 0 || len(v) > 8 || v[0] == '.' || v[len(v)-1] == '.' {
		return nil
	}
	for _, c := range v {
		if (c < '0' || c > '9') && c != '.' {
			return nil
		}
	}
	return v
}

// appendStartLine writes the start line of r, escaped (for JSON, as a
// JSON string's inside); with red, a request's target is redacted.
func appendStartLine(b []byte, r *record, red *redactor, json bool) []byte {
	line := r.msg.start
	if red == nil || r.typ == typeCR || r.typ == typeSR {
		return appendEscapedAs(b, line, json)
	}
	start, end := splitRequest(line)
	b = appendEscapedAs(b, line[:start], json)
	b = red.appendTarget(b, line[start:end], json)
	return appendEscapedAs(b, line[end:], json)
}

// appendTarget writes a request target as a JSON string's inside,
// redacted with red.
func appendTarget(b, t []byte, red *redactor) []byte {
	if red == nil {
		return appendEscapedAs(b, t, true)
	}
	return red.appendTarget(b, t, true)
}

// directions are network.direction by type, from this host's point of
// view, as ECS asks of host-based monitoring: a packet that reaches this
// host is ingress, one it sends egress.
var directions = [numTypes]string{
	typeCQ: "ingress", // a client's request reaches our server
	typeCR: "egress",  // our server's response leaves
	typeSQ: "egress",  // our request leaves for a server
	typeSR: "ingress", // a server's response reaches us
}

// appendJSON appends the JSON event of r, with its '\n', and returns the
// buffer and the line's local day (YYYYMMDD), which picks its file like
// the text line's. Field order is fixed; a field whose value the packet
// does not give (a header absent or empty, a start line not well formed)
// is left out, and the values as sent stay in httplog.*, so nothing of the
// text line is lost. See the README's field table.
// It is long because it writes every field of the event in order, one
// after the other, as the README's table lists them.
func appendJSON(b []byte, r *record, c *clock, red *redactor) ([]byte, uint32) {
	_, _, day := c.at(r.ts)
	response := r.typ == typeCR || r.typ == typeSR
	b = append(b, `{"@timestamp":"`...)
	b = c.appendUTC(b, r.ts)

	b = append(b, `","event":{"action":"`...)
	if response {
		b = append(b, `response"`...)
	} else {
		b = append(b, `request"`...)
	}
	if r.timing == timed { // -pair: a response paired with its request
		b = append(b, `,"start":"`...)
		b = c.appendUTC(b, r.ts-r.rt)
		b = append(b, `","duration":`...)
		b = strconv.AppendInt(b, r.rt, 10)
	}

	b = append(b, `},"source":`...)
	b = appendJSONEndpoint(b, r.src)
	b = append(b, `,"destination":`...)
	b = appendJSONEndpoint(b, r.dst)
	b = append(b, `,"network":{"transport":"tcp","protocol":"http","type":"`...)
	if r.src.Addr().Is4() {
		b = append(b, "ipv4"...)
	} else {
		b = append(b, "ipv6"...)
	}
	b = append(b, `","direction":"`...)
	b = append(b, directions[r.typ]...)
	b = append(b, `"}`...)

	// http: version, request.method, response.{status_code, headers, body}.
	line := r.msg.start
	var version, method, target []byte
	code := -1
	if response {
		version, code = r.msg.version, r.msg.status
		method, target = r.req.method, r.req.target // set by pairing, else nil
	} else {
		start, end := splitRequest(line)
		if start > 0 && line[start-1] == ' ' {
			method = line[:start-1]
		}
		target = line[start:end]
		if end < len(line) {
			version = httpVersion(line[end+1:])
		}
	}
	length := parseLength(r.msg.field1) // the pairing's reading: digits, below 2^40; else -1
	lengthOK := length >= 0
	ctype := r.msg.field2
	hasResponse := response && (code >= 0 || len(ctype) > 0 || lengthOK)
	if len(version) > 0 || len(method) > 0 || hasResponse {
		b = append(b, `,"http":{`...)
		sep := false // a member was written in the object
		if len(version) > 0 {
			b = appendJSONString(b, `"version":"`, version, `"`)
			sep = true
		}
		if len(method) > 0 {
			b = appendSep(b, sep)
			b = appendJSONString(b, `"request":{"method":"`, method, `"}`)
			sep = true
		}
		if hasResponse {
			b = appendSep(b, sep)
			b = append(b, `"response":{`...)
			sep = false
			if code >= 0 {
				b = append(b, `"status_code":`...)
				b = strconv.AppendInt(b, int64(code), 10)
				sep = true
			}
			if len(ctype) > 0 {
				b = appendSep(b, sep)
				b = appendJSONString(b, `"headers":{"content-type":"`, ctype, `"}`)
				sep = true
			}
			if lengthOK {
				b = appendSep(b, sep)
				b = append(b, `"body":{"bytes":`...)
				b = strconv.AppendInt(b, length, 10)
				b = append(b, '}')
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}

	if len(target) > 0 {
		b = append(b, `,"url":{"original":"`...)
		if response {
			b = appendEscapedAs(b, target, true) // the pairing table kept it redacted
		} else {
			b = appendTarget(b, target, red)
		}
		b = append(b, `"}`...)
	}
	if !response && len(ctype) > 0 {
		b = appendJSONString(b, `,"user_agent":{"original":"`, r.msg.field2, `"}`)
	}

	// httplog: the type, and the values of the text line as sent.
	b = append(b, `,"httplog":{"type":"`...)
	b = append(b, r.typ.String()...)
	b = append(b, `","start_line":"`...)
	b = appendStartLine(b, r, red, true)
	b = append(b, '"')
	host := r.msg.field1
	if response {
		host = r.req.host // set by pairing, else nil
	}
	if len(host) > 0 {
		b = appendJSONString(b, `,"host":"`, host, `"`)
	}
	if response && len(r.msg.field1) > 0 {
		b = appendJSONString(b, `,"content_length":"`, r.msg.field1, `"`)
	}
	if r.req.truncated {
		b = append(b, `,"request_truncated":true`...)
	}
	return append(b, "}}\n"...), day
}

// appendJSONEndpoint writes {"ip":"…","port":N}.
func appendJSONEndpoint(b []byte, ap netip.AddrPort) []byte {
	b = append(b, `{"ip":"`...)
	b = ap.Addr().AppendTo(b)
	b = append(b, `","port":`...)
	b = strconv.AppendUint(b, uint64(ap.Port()), 10)
	return append(b, '}')
}

// appendJSONString writes prefix, the text v escaped as a JSON string's
// content (the text format's escaping, then JSON's), and suffix.
func appendJSONString(b []byte, prefix string, v []byte, suffix string) []byte {
	b = append(b, prefix...)
	b = appendEscapedAs(b, v, true)
	return append(b, suffix...)
}

// appendSep writes the comma between two members of an object.
func appendSep(b []byte, sep bool) []byte {
	if sep {
		return append(b, ',')
	}
	return b
}
