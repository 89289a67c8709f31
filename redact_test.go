package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// redactCases are the request lines of SPEC section 11's cases and what
// -redact with the default list makes of them in the text line (the
// text format's escaped form; a JSON event holds the same text).
var redactCases = []struct {
	name, line, want string
}{
	// A listed name in any position.
	{"only parameter", "GET /a?token=s3cr3t HTTP/1.1", "GET /a?token=REDACTED HTTP/1.1"},
	{"first", "GET /a?password=p&x=1 HTTP/1.1", "GET /a?password=REDACTED&x=1 HTTP/1.1"},
	{"middle", "GET /a?x=1&api_key=k&y=2 HTTP/1.1", "GET /a?x=1&api_key=REDACTED&y=2 HTTP/1.1"},
	{"last", "GET /a?x=1&sig=abc%2Fdef HTTP/1.1", "GET /a?x=1&sig=REDACTED HTTP/1.1"},
	{"several", "GET /s3/o?X-Amz-Credential=AKIA%2F2019&X-Amz-Date=20190901T000000Z&X-Amz-Signature=f00d HTTP/1.1",
		"GET /s3/o?X-Amz-Credential=REDACTED&X-Amz-Date=20190901T000000Z&X-Amz-Signature=REDACTED HTTP/1.1"},
	// Names that only contain a listed name stay.
	{"contains a listed name", "GET /a?mykey=1&keys=2&tokens=3&x_token=4&key_=5 HTTP/1.1", "GET /a?mykey=1&keys=2&tokens=3&x_token=4&key_=5 HTTP/1.1"},
	// Case.
	{"any case", "GET /a?TOKEN=1&Password=2&x-amz-signature=3&awsaccesskeyid=4 HTTP/1.1",
		"GET /a?TOKEN=REDACTED&Password=REDACTED&x-amz-signature=REDACTED&awsaccesskeyid=REDACTED HTTP/1.1"},
	// A parameter without =, and an empty value: nothing to hide.
	{"no =", "GET /a?token&x=1 HTTP/1.1", "GET /a?token&x=1 HTTP/1.1"},
	{"empty value", "GET /a?token=&key= HTTP/1.1", "GET /a?token=&key= HTTP/1.1"},
	{"= in the value", "GET /a?token=a=b&x=1 HTTP/1.1", "GET /a?token=REDACTED&x=1 HTTP/1.1"},
	// Repeated names.
	{"repeated", "GET /a?token=1&token=2&x=3&token=4 HTTP/1.1", "GET /a?token=REDACTED&token=REDACTED&x=3&token=REDACTED HTTP/1.1"},
	// Percent-encoded names are decoded once; a bad escape is a byte.
	{"percent-encoded name", "GET /a?%74oken=1&t%6Fk%65n=2&%54OKEN=3&api%5Fkey=4 HTTP/1.1",
		"GET /a?%74oken=REDACTED&t%6Fk%65n=REDACTED&%54OKEN=REDACTED&api%5Fkey=REDACTED HTTP/1.1"},
	{"encoded twice", "GET /a?%2574oken=1 HTTP/1.1", "GET /a?%2574oken=1 HTTP/1.1"},
	{"bad escapes", "GET /a?%7=1&%zztoken=2&token%=3&tok%6 HTTP/1.1", "GET /a?%7=1&%zztoken=2&token%=3&tok%6 HTTP/1.1"},
	// ; separates parameters too.
	{"semicolons", "GET /a?x=1;token=2;y=3 HTTP/1.1", "GET /a?x=1;token=REDACTED;y=3 HTTP/1.1"},
	{"mixed separators", "GET /a;p?session=1;sessionid=2&auth=3 HTTP/1.1", "GET /a;p?session=REDACTED;sessionid=REDACTED&auth=REDACTED HTTP/1.1"},
	// Fragments: the value ends at #; a fragment's parameters are hidden too.
	{"fragment after a value", "GET /a?token=1#frag HTTP/1.1", "GET /a?token=REDACTED#frag HTTP/1.1"},
	{"parameters in the fragment", "GET /cb#access_token=xyz&token_type=bearer HTTP/1.1", "GET /cb#access_token=REDACTED&token_type=bearer HTTP/1.1"},
	{"query and fragment", "GET /a?x=1#id_token=2 HTTP/1.1", "GET /a?x=1#id_token=REDACTED HTTP/1.1"},
	// user:password@ of an absolute URI.
	{"user and password", "GET http://alice:s3cr3t@example.com/a?b=1 HTTP/1.1", "GET http://REDACTED:REDACTED@example.com/a?b=1 HTTP/1.1"},
	{"user only", "GET https://ghp_token@example.com/ HTTP/1.1", "GET https://REDACTED@example.com/ HTTP/1.1"},
	{"an @ in the password", "GET http://u:p@ss@example.com:8080/x HTTP/1.1", "GET http://REDACTED:REDACTED@example.com:8080/x HTTP/1.1"},
	{"scheme in any case, and a query", "GET HTTP://u:p@h/?token=t HTTP/1.1", "GET HTTP://REDACTED:REDACTED@h/?token=REDACTED HTTP/1.1"},
	{"an @ in the path is no user", "GET http://example.com/a@b?c=d@e HTTP/1.1", "GET http://example.com/a@b?c=d@e HTTP/1.1"},
	{"origin form has no user", "GET /u:p@h/x HTTP/1.1", "GET /u:p@h/x HTTP/1.1"},
	{"not a scheme", "GET 1http://u:p@h/ HTTP/1.1", "GET 1http://u:p@h/ HTTP/1.1"},
	// Cut by the snap length inside a value: the part captured is hidden.
	{"cut in a value", "GET /a?x=1&token=abcd", "GET /a?x=1&token=REDACTED"},
	{"cut in the version", "GET /a?token=abcd HTT", "GET /a?token=REDACTED HTT"},
	{"cut in the user", "GET http://alice:s3c", "GET http://alice:s3c"}, // no @ captured: nothing known to be a user
	{"a space in the value", "GET /a?token=ab cd HTTP/1.1", "GET /a?token=REDACTED HTTP/1.1"},
	// Escaping of what is kept; what is hidden is hidden whatever it holds.
	{"escapes", "GET /\x01?token=\x00\xff\\&x=\\\x7f HTTP/1.1", `GET /\x01?token=REDACTED&x=\\\x7f HTTP/1.1`},
	// Nothing to hide: written byte for byte (escaped as ever).
	{"root", "GET / HTTP/1.1", "GET / HTTP/1.1"},
	{"asterisk", "OPTIONS * HTTP/1.1", "OPTIONS * HTTP/1.1"},
	{"authority", "CONNECT example.com:443 HTTP/1.1", "CONNECT example.com:443 HTTP/1.1"},
	{"plain query", "GET /search?q=token&lang=ko&page=2 HTTP/1.1", "GET /search?q=token&lang=ko&page=2 HTTP/1.1"},
	{"odd punctuation", "GET /%zz?&&;;##==?&=token HTTP/1.1", "GET /%zz?&&;;##==?&=token HTTP/1.1"},
	{"absolute without user", "GET http://example.com:80/a?b=c HTTP/1.0", "GET http://example.com:80/a?b=c HTTP/1.0"},
	{"no target", "GET ", "GET "},
	{"UTF-8", "GET /검색?q=한국어&token=ü HTTP/1.1", "GET /검색?q=한국어&token=REDACTED HTTP/1.1"},
}

// redactRecord is a request record of a request line, for the appenders.
func redactRecord(line string) record {
	return record{src: netip.MustParseAddrPort("192.0.2.1:40000"), dst: netip.MustParseAddrPort("192.0.2.2:80"), typ: typeCQ,
		msg: message{start: []byte(line), field1: []byte("h"), field2: []byte("ua")}}
}

// TestRedact: every case of SPEC section 11, in the text line and in the
// JSON event (httplog.start_line, and url.original for its target).
func TestRedact(t *testing.T) {
	red := newRedactor(mustRedactParams(t, defaultRedactParams))
	c := newClock(time.UTC)
	for _, tt := range redactCases {
		t.Run(tt.name, func(t *testing.T) {
			rec := redactRecord(tt.line)
			text, _ := appendLine(nil, &rec, c, red)
			want := "1970-01-01 00:00:00.000 192.0.2.1#40000 192.0.2.2#80 CQ " + tt.want + " h ua\n"
			if string(text) != want {
				t.Errorf("text\n got %q\nwant %q", text, want)
			}
			js, _ := appendJSON(nil, &rec, c, red)
			ev, err := parseEvent(js)
			if err != nil {
				t.Fatal(err)
			}
			if got := ev.str("httplog.start_line"); got != tt.want {
				t.Errorf("httplog.start_line %q, want %q", got, tt.want)
			}
			if got := textOf(ev); got != string(text) {
				t.Errorf("the event makes %q, the text line is %q", got, text)
			}
			if err := checkDerived(ev); err != nil {
				t.Error(err)
			}
			// Without -redact, the line is as sent.
			plainText, _ := appendLine(nil, &rec, c, nil)
			if want := "1970-01-01 00:00:00.000 192.0.2.1#40000 192.0.2.2#80 CQ " + string(appendEscaped(nil, []byte(tt.line))) + " h ua\n"; string(plainText) != want {
				t.Errorf("without -redact\n got %q\nwant %q", plainText, want)
			}
		})
	}
	// Responses have no target: a status line is never changed.
	rec := redactRecord("HTTP/1.1 200 token=x?token=y")
	rec.typ = typeCR
	if text, _ := appendLine(nil, &rec, c, red); !strings.Contains(string(text), " CR HTTP/1.1 200 token=x?token=y ") {
		t.Errorf("a status line changed: %q", text)
	}
}

// TestRedactParams: -redact_params replaces the list; names are read
// without regard to case, and bad names are refused.
func TestRedactParams(t *testing.T) {
	red := newRedactor(mustRedactParams(t, " Foo ,bar-Baz"))
	rec := redactRecord("GET /a?token=1&FOO=2&bar-baz=3&foo_=4 HTTP/1.1")
	text, _ := appendLine(nil, &rec, newClock(time.UTC), red)
	if want := " CQ GET /a?token=1&FOO=REDACTED&bar-baz=REDACTED&foo_=4 HTTP/1.1 "; !strings.Contains(string(text), want) {
		t.Errorf("got %q, want it to hold %q", text, want)
	}
	// An empty list hides user:password@ only.
	red = newRedactor(mustRedactParams(t, ""))
	rec = redactRecord("GET http://u:p@h/?token=1 HTTP/1.1")
	if text, _ := appendLine(nil, &rec, newClock(time.UTC), red); !strings.Contains(string(text), " GET http://REDACTED:REDACTED@h/?token=1 ") {
		t.Errorf("with an empty list: %q", text)
	}
	for _, bad := range []string{"a,,b", "a=b", "a b", "a&b", "a;b", "a#b", "a\x00", strings.Repeat("x", maxRedactName+1)} {
		if _, err := parseRedactParams(bad); err == nil {
			t.Errorf("parseRedactParams(%q) accepts it", bad)
		}
	}
	// The default list is the one of SPEC section 11, and more.
	names := mustRedactParams(t, defaultRedactParams)
	for _, n := range []string{"password", "passwd", "pwd", "token", "access_token", "refresh_token", "id_token", "api_key", "apikey", "key",
		"secret", "client_secret", "auth", "session", "sessionid", "sig", "signature", "x-amz-signature", "x-amz-credential",
		"x-amz-security-token", "awsaccesskeyid", "x-goog-signature"} {
		if !newRedactor(names).listed([]byte(n)) {
			t.Errorf("%s is not in the default list", n)
		}
	}
}

func mustRedactParams(t *testing.T, s string) []string {
	t.Helper()
	names, err := parseRedactParams(s)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestRedactFlags: -redact and -redact_params reach the lines of a run,
// in both formats; without -redact nothing changes.
func TestRedactFlags(t *testing.T) {
	frames := [][]byte{ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, "GET /a?token=t&foo=f HTTP/1.1\r\nHost: h\r\n\r\n")}
	path := writePcapTimes(t, frames, func(int) time.Time { return time.Unix(0, 0) })
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "/a?token=t&foo=f"},
		{[]string{"-redact"}, "/a?token=REDACTED&foo=f"},
		{[]string{"-redact", "-redact_params", "foo"}, "/a?token=t&foo=REDACTED"},
		{[]string{"-redact_params", "foo"}, "/a?token=t&foo=f"}, // the list alone hides nothing
	} {
		for _, format := range []string{"text", "json"} {
			out, stderr, code := runPipeline(t, append([]string{"-r", path, "-d", "-", "-format", format}, tt.args...)...)
			if code != 0 || !strings.Contains(out, "GET "+tt.want+" HTTP/1.1") {
				t.Errorf("%s %q: exit %d, %q, want GET %s HTTP/1.1; %s", format, tt.args, code, out, tt.want, stderr)
			}
			if format == "json" && !strings.Contains(out, `"url":{"original":"`+tt.want+`"}`) {
				t.Errorf("%q: url.original is not %q: %s", tt.args, tt.want, out)
			}
		}
	}
}
