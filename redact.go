package main

// Secret redaction (-redact): the values of listed query parameters, and
// the user:password@ of an absolute URI, are written as REDACTED in the
// request target of a request line, in both formats. It works on the
// bytes as captured and appends into the caller's buffer, escaping what
// it keeps: nothing is allocated per packet.

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// defaultRedactParams is the list of -redact_params, SPEC section 11's:
// the names OpenTelemetry's url.query convention redacts (AWSAccessKeyId,
// Signature, sig, X-Goog-Signature), the usual names of passwords, tokens,
// keys and sessions, and the other parameters of signed URLs (AWS SigV4,
// Google Cloud Storage; Azure SAS signs with "sig").
const defaultRedactParams = "password,passwd,pwd,token,access_token,refresh_token,id_token," +
	"api_key,apikey,key,secret,client_secret,auth,session,sessionid,sig,signature," +
	"X-Amz-Signature,X-Amz-Credential,X-Amz-Security-Token,AWSAccessKeyId," +
	"X-Goog-Signature,X-Goog-Credential"

// redactedText replaces what redaction hides.
const redactedText = "REDACTED"

// maxRedactName bounds the length of a listed name: a query parameter
// name longer than the longest listed one is never decoded to compare.
const maxRedactName = 128

// parseRedactParams reads a comma-separated list of parameter names.
// Names are compared without regard to ASCII case, so they are kept
// lower-cased. A name holds none of the bytes that end a name or a
// parameter in a query (= & ; #), no space and no control byte; an empty
// list is allowed (only user:password@ is then redacted).
func parseRedactParams(s string) ([]string, error) {
	var names []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			if strings.TrimSpace(s) == "" {
				return nil, nil
			}
			return nil, errors.New("an empty name in the list")
		}
		if len(f) > maxRedactName {
			return nil, fmt.Errorf("%.20q… is longer than %d bytes", f, maxRedactName)
		}
		if i := strings.IndexFunc(f, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune("=&;#", r) }); i >= 0 {
			return nil, fmt.Errorf("%q holds %q, which cannot be in a parameter name", f, f[i:i+1])
		}
		names = append(names, asciiLower(f))
	}
	return names, nil
}

// redactor holds the list of -redact_params, prepared for lookups; the
// parsers share it, read-only.
type redactor struct {
	// byLen holds the lower-cased names by their length: a parameter name
	// is compared with the few names of its length only, byte by byte
	// (cheaper than hashing it for a map).
	byLen  [maxRedactName + 1][]string
	maxLen int // of the longest name
}

func newRedactor(names []string) *redactor {
	r := &redactor{}
	for _, n := range names {
		n = asciiLower(n)
		r.byLen[len(n)] = append(r.byLen[len(n)], n)
		r.maxLen = max(r.maxLen, len(n))
	}
	return r
}

// listed reports whether a query parameter name, as sent, is on the list:
// percent-encoded bytes decoded (%74oken is token), ASCII case ignored.
func (r *redactor) listed(name []byte) bool {
	var buf [maxRedactName]byte
	n := 0
	for i := 0; i < len(name); i++ {
		if n == r.maxLen {
			return false // longer than any listed name
		}
		c := name[i]
		if c == '%' && i+2 < len(name) && unhex(name[i+1]) >= 0 && unhex(name[i+2]) >= 0 {
			c = byte(unhex(name[i+1])<<4 | unhex(name[i+2]))
			i += 2
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	for _, name := range r.byLen[n] {
		if string(buf[:n]) == name { // a comparison, no conversion made
			return true
		}
	}
	return false
}

// asciiLower lower-cases the ASCII letters of s only, as listed compares.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// appendTarget appends a request target with what redaction hides
// written REDACTED, and the rest escaped (appendEscapedAs). What is
// hidden:
//   - in an absolute URI (scheme://user:password@host/…), the user
//     information: REDACTED:REDACTED@, or REDACTED@ without a colon;
//   - the value of every parameter of the query whose name is listed, up
//     to the next &, ; or #, or the end of the target (a target cut by
//     the snap length inside a value hides the part that was captured).
//     The fragment (after #) is read as parameters too: clients do not
//     send one, but a request that carries #access_token=… (OAuth's
//     implicit flow) has it hidden. An empty value stays empty, and a
//     parameter without = has no value to hide.
//
// A target with nothing to hide is written as appendEscapedAs writes it.
func (r *redactor) appendTarget(b, t []byte, json bool) []byte {
	if json {
		return r.redactAs(b, t, escJSON)
	}
	return r.redactAs(b, t, escText)
}

// keepTarget appends a request target redacted as appendTarget does, the
// rest as sent, not escaped: the form the pairing table keeps for the
// response's JSON event (pairtext.go), escaped when that is written. The
// result is at most 8 times as long as t, plus 16: a hidden value is at
// least one byte, REDACTED eight, and an empty user:password (://:@) may
// become REDACTED:REDACTED.
func (r *redactor) keepTarget(b, t []byte) []byte {
	return r.redactAs(b, t, escNone)
}

// escaping is how redactAs writes the bytes of a target it keeps.
type escaping uint8

const (
	escText escaping = iota // as the text line escapes them (appendEscaped)
	escJSON                 // the same, as a JSON string's inside
	escNone                 // as sent
)

// appendAs appends s as esc says.
func appendAs(b, s []byte, esc escaping) []byte {
	if esc == escNone {
		return append(b, s...)
	}
	return appendEscapedAs(b, s, esc == escJSON)
}

// redactAs is appendTarget, writing what it keeps as esc says.
func (r *redactor) redactAs(b, t []byte, esc escaping) []byte {
	done := 0 // t[:done] is written
	if k := schemeEnd(t); k > 0 {
		auth := t[k:]
		if e := bytes.IndexAny(auth, "/?#"); e >= 0 {
			auth = auth[:e]
		}
		if at := bytes.LastIndexByte(auth, '@'); at >= 0 {
			b = appendAs(b, t[:k], esc)
			b = append(b, redactedText...)
			if bytes.IndexByte(auth[:at], ':') >= 0 {
				b = append(b, ':')
				b = append(b, redactedText...)
			}
			done = k + at // from the '@' on
		}
	}
	q := bytes.IndexAny(t[done:], "?#")
	if q < 0 {
		return appendAs(b, t[done:], esc)
	}
	for p := done + q + 1; p <= len(t); {
		eq, end := -1, p
		for ; end < len(t) && !paramEnd[t[end]]; end++ {
			if eq < 0 && t[end] == '=' {
				eq = end
			}
		}
		if eq >= 0 && eq+1 < end && r.listed(t[p:eq]) {
			b = appendAs(b, t[done:eq+1], esc)
			b = append(b, redactedText...)
			done = end
		}
		p = end + 1
	}
	return appendAs(b, t[done:], esc)
}

// paramEnd marks the bytes that end a query parameter: & and ; between
// parameters, # before the fragment.
var paramEnd = [256]bool{'&': true, ';': true, '#': true}

// schemeEnd returns the length of "scheme://" at the start of t (RFC 3986:
// a letter, then letters, digits, +, - or .), or 0.
func schemeEnd(t []byte) int {
	for i, c := range t {
		switch {
		case 'a' <= c|0x20 && c|0x20 <= 'z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':' && i+2 < len(t) && t[i+1] == '/' && t[i+2] == '/':
			return i + 3
		default:
			return 0
		}
	}
	return 0
}
