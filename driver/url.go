package driver

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid reports a bad argument, option or URL, detected before any
// I/O. It is the same value as dlock.ErrInvalid; drivers wrap it so that
// they need not import package dlock for it.
var ErrInvalid = errors.New("dlock: invalid argument")

// CommonParams are the URL query parameters that dlock.Open reads for every
// scheme: ttl, renew, drift, owner and fencing. The URL a driver's open
// function receives still carries them, with the values the Locker uses
// (fencing only as fencing=false, when the Locker disables fences), so
// that a driver that needs one (a quorum driver's drift, or its fencing)
// reads the same setting; [UnknownParams] accepts them.
var CommonParams = []string{"ttl", "renew", "drift", "owner", "fencing"}

// redactedText replaces secrets in printed URLs.
const redactedText = "xxxxx"

// publicParams are the query parameters whose values are no secret, so
// that [Redacted] shows them; see [PublicParams].
var publicParams struct {
	sync.RWMutex
	m map[string]bool
}

func init() { PublicParams(CommonParams...) }

// PublicParams declares query parameters whose values are settings, not
// secrets, so that [Redacted] and [RedactURL] show them. Drivers call it from
// init for their documented parameters. The values of every other
// parameter are printed as "xxxxx": a parameter a driver does not know
// (pw=, auth=) may well be a password given under another name.
func PublicParams(names ...string) {
	publicParams.Lock()
	defer publicParams.Unlock()
	if publicParams.m == nil {
		publicParams.m = make(map[string]bool)
	}
	for _, n := range names {
		publicParams.m[n] = true
	}
}

// isPublic reports whether name was declared with [PublicParams].
func isPublic(name string) bool {
	publicParams.RLock()
	defer publicParams.RUnlock()
	return publicParams.m[name]
}

// ParseURL parses a dlock URL strictly, so that a URL never silently means
// something other than what its text says. It returns the URL and its
// query. It refuses, with an error wrapping [ErrInvalid]:
//
//   - text that does not start with SCHEME:// (a scheme left out, or
//     "redis:host", "redis:/host", "redis:://host");
//   - a '@' after the host, or a '#': the signs of a password with an
//     unescaped '/', '?', '#' or '@', which would otherwise turn part of the
//     password into a host, a path or a query parameter;
//   - an empty port ("host:");
//   - a query that url.ParseQuery would not parse whole: a ';', a bad
//     %-escape, an empty name, or a parameter given twice.
//
// Its errors show the URL only through [RedactURL], and never quote the
// parser's own message, which repeats its input.
func ParseURL(rawURL string) (*url.URL, url.Values, error) {
	red := RedactURL(rawURL)
	bad := func(why string) error {
		return fmt.Errorf("%w: malformed URL %s: %s", ErrInvalid, red, why)
	}
	scheme, rest, ok := cutScheme(rawURL)
	if !ok || !strings.HasPrefix(rest, "//") {
		return nil, nil, bad("want SCHEME://[USER:PASSWORD@]HOST[:PORT][/PATH][?PARAMS], for example redis://127.0.0.1:6379/0")
	}
	// What follows the authority: an '@' there is a password's unescaped
	// '/', '?' or '#'.
	if i := strings.IndexAny(rest[2:], "/?#"); i >= 0 {
		rest = rest[2+i:]
	} else {
		rest = ""
	}
	if strings.Contains(rest, "@") {
		return nil, nil, bad("'@' after the host; escape '@', '/', '?' and '#' in a password or a parameter as %40, %2F, %3F and %23")
	}
	if strings.Contains(rest, "#") {
		return nil, nil, bad("a URL has no #fragment; escape '#' in a password or a parameter as %23")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, bad(parseReason(err))
	}
	if !strings.EqualFold(u.Scheme, scheme) || u.Opaque != "" {
		return nil, nil, bad("cannot be parsed")
	}
	if _, err := HostList(u, ""); err != nil && u.Host != "" {
		return nil, nil, err
	}
	q, err := ParseQuery(u.RawQuery)
	if err != nil {
		return nil, nil, fmt.Errorf("%w in %s", err, red)
	}
	return u, q, nil
}

// cutScheme splits a leading "SCHEME:" (RFC 3986 syntax) from s.
func cutScheme(s string) (scheme, rest string, ok bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return s[:i], s[i+1:], true
		default:
			return "", s, false
		}
	}
	return "", s, false
}

// parseReason describes url.Parse's error without quoting the input.
func parseReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "invalid URL escape"):
		return "a '%' that does not start a %XX escape"
	case strings.Contains(msg, "invalid port"):
		return "the port is not a number (in a list of hosts, give every host its port)"
	case strings.Contains(msg, "invalid userinfo"):
		return "a character in the user or password that must be %-escaped"
	case strings.Contains(msg, "invalid control character"):
		return "a control character"
	case strings.Contains(msg, "invalid character") && strings.Contains(msg, "host"):
		return "a character that is not allowed in a host name"
	case strings.Contains(msg, "missing ']'"), strings.Contains(msg, "IPv6"), strings.Contains(msg, "invalid host"):
		return "a malformed IPv6 address"
	}
	return "cannot be parsed"
}

// ParseQuery parses a URL query strictly: unlike url.ParseQuery it never
// drops a part it cannot read. A ';' (which Go no longer takes as a
// separator), a part without '=' (the tail of a value with an unescaped
// '&'), a bad %-escape, an empty name or value, or a name given twice is
// an error wrapping [ErrInvalid]. The errors name no value.
func ParseQuery(rawQuery string) (url.Values, error) {
	q := url.Values{}
	if rawQuery == "" {
		return q, nil
	}
	if strings.Contains(rawQuery, ";") {
		return nil, fmt.Errorf("%w: a ';' in the URL query: separate parameters with '&', and escape ';' in a value as %%3B", ErrInvalid)
	}
	for part := range strings.SplitSeq(rawQuery, "&") {
		if part == "" {
			continue
		}
		rawName, rawValue, hasValue := strings.Cut(part, "=")
		if !hasValue {
			// Every parameter has a value: a part without '=' is most
			// likely the tail of a value (a password) with an unescaped
			// '&', which must not be named as a parameter.
			return nil, fmt.Errorf("%w: a URL parameter without '=': write NAME=VALUE, and escape '&' in a value as %%26", ErrInvalid)
		}
		name, err1 := url.QueryUnescape(rawName)
		value, err2 := url.QueryUnescape(rawValue)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: a '%%' that does not start a %%XX escape in the URL query", ErrInvalid)
		}
		if name == "" {
			return nil, fmt.Errorf("%w: a URL parameter without a name", ErrInvalid)
		}
		if q.Has(name) {
			return nil, fmt.Errorf("%w: URL parameter %s given twice", ErrInvalid, paramName(name))
		}
		if value == "" {
			// An empty value would silently mean the default (ttl= is
			// the default TTL): a template's unset variable, most likely.
			return nil, fmt.Errorf("%w: URL parameter %s has no value: leave it out for the default", ErrInvalid, paramName(name))
		}
		q.Set(name, value)
	}
	return q, nil
}

// Query is [ParseQuery] of u's query.
func Query(u *url.URL) (url.Values, error) {
	q, err := ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w in %s", err, Redacted(u))
	}
	return q, nil
}

// HostList returns the comma-separated HOST[:PORT] list of u's host, each
// with defaultPort added where the port is left out (unless defaultPort is
// empty). It refuses an empty list, an empty host or port, and a port that
// is not a number. IPv6 literals are accepted in brackets.
func HostList(u *url.URL, defaultPort string) ([]string, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, Redacted(u), why)
	}
	if u.Host == "" {
		return nil, bad("no host; a URL must name its server, there is no default host")
	}
	hosts := strings.Split(u.Host, ",")
	for i, h := range hosts {
		host, port := h, ""
		if strings.HasPrefix(h, "[") {
			end := strings.Index(h, "]")
			if end < 0 {
				return nil, bad("a malformed IPv6 address")
			}
			host, port = h[:end+1], h[end+1:]
			if port != "" && port[0] != ':' {
				return nil, bad("a malformed IPv6 address")
			}
		} else if j := strings.LastIndex(h, ":"); j >= 0 {
			host, port = h[:j], h[j:]
		}
		switch {
		case host == "" || host == "[]":
			return nil, bad("an empty host name")
		case port == ":":
			return nil, bad("an empty port after ':' (in a password, escape '/', '?', '#' and '@')")
		case port != "":
			if n, err := strconv.Atoi(port[1:]); err != nil || n < 1 || n > 65535 {
				return nil, bad("a port that is not a number from 1 to 65535")
			}
		case defaultPort != "":
			port = ":" + defaultPort
		}
		if strings.HasPrefix(host, "[") {
			// netip, unlike net.ParseIP, takes a zone (fe80::1%eth0).
			if _, err := netip.ParseAddr(host[1 : len(host)-1]); err != nil {
				return nil, bad("a malformed IPv6 address")
			}
		}
		hosts[i] = host + port
	}
	return hosts, nil
}

// UnknownParams returns an error wrapping [ErrInvalid] that names the query
// parameters of u that are neither in known nor [CommonParams], or nil.
// Drivers call it from their open function. A name is printed only if it
// looks like a parameter name, never a value or a password's fragment.
func UnknownParams(u *url.URL, known ...string) error {
	q, err := Query(u)
	if err != nil {
		return err
	}
	var bad []string
	for k := range q {
		if !slices.Contains(known, k) && !slices.Contains(CommonParams, k) {
			bad = append(bad, paramName(k))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	bad = slices.Compact(bad)
	return fmt.Errorf("%w: unknown URL parameter %s in %s", ErrInvalid, strings.Join(bad, ", "), Redacted(u))
}

// paramName returns name if it looks like a parameter name (letters,
// digits and "_.-", at most 40), or a placeholder: a name that does not
// could be part of a password.
func paramName(name string) string {
	if len(name) == 0 || len(name) > 40 {
		return "(a name not shown)"
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "(a name not shown)"
		}
	}
	return name
}

// Redacted returns u as text fit for messages; see [RedactURL].
func Redacted(u *url.URL) string {
	if u == nil {
		return ""
	}
	return RedactURL(u.String())
}

// RedactURL returns rawURL as text fit for errors and logs, whether it
// parses or not. It hides:
//
//   - the user information, user name and password, up to the last '@'
//     (the user name too: a password is often given there by mistake,
//     and without "//" there is no telling a user from a scheme);
//   - the value of every query parameter not declared public with
//     [PublicParams] (so a password under any name, pw=, auth=, token=);
//   - a query parameter's name that does not look like one;
//   - any #fragment; and when the text does not start with "SCHEME:/",
//     everything before the last '@' or, without one, after the first ':'.
//
// Spaces, control characters, line separators, bidi controls and invalid
// UTF-8 are %-escaped, so the result is one line of plain text.
func RedactURL(rawURL string) string {
	var b strings.Builder
	s := rawURL
	scheme, rest, ok := cutScheme(s)
	hasPrefix := ok && strings.HasPrefix(rest, "/")
	if hasPrefix {
		slashes := len(rest) - len(strings.TrimLeft(rest, "/"))
		b.WriteString(scheme + ":" + rest[:slashes])
		s = rest[slashes:]
	}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		b.WriteString(redactedText + "@")
		ambiguous := strings.ContainsAny(s[:at], "?#")
		s = s[at+1:]
		if ambiguous {
			// The '@' may have been in the query, and what follows it a
			// value: show only what cannot be one.
			if i := strings.IndexAny(s, "?#&;="); i >= 0 {
				return b.String() + escapeControl(s[:i]) + "…"
			}
		}
	} else if !hasPrefix {
		if scheme, _, ok := cutScheme(s); ok {
			return escapeControl(scheme) + ":" + redactedText
		}
		s = strings.TrimSuffix(strings.SplitN(s, ":", 2)[0], ":")
	}
	s, _, _ = strings.Cut(s, "#")
	s, query, hasQuery := strings.Cut(s, "?")
	b.WriteString(escapeControl(s))
	if hasQuery {
		b.WriteByte('?')
		i := 0
		for len(query) > 0 {
			part := query
			end := strings.IndexAny(query, "&;")
			if end >= 0 {
				part = query[:end]
			}
			if end < 0 {
				query = ""
			} else {
				query = query[end+1:]
			}
			if part == "" {
				continue
			}
			if i > 0 {
				b.WriteByte('&')
			}
			i++
			rawName, _, hasValue := strings.Cut(part, "=")
			name, err := url.QueryUnescape(rawName)
			// A part without '=' may be the tail of a value after an
			// unescaped '&'.
			if err != nil || paramName(name) != name || !hasValue {
				b.WriteString(redactedText)
				continue
			}
			switch {
			case isPublic(name):
				b.WriteString(escapeControl(part))
			default:
				b.WriteString(rawName + "=" + redactedText)
			}
		}
	}
	return b.String()
}

// escapeControl %-escapes what could break the one line or forge text on
// a terminal or in a log viewer: spaces, control characters (C0 and C1),
// line and paragraph separators, bidi controls and invalid UTF-8.
func escapeControl(s string) string {
	if !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if unsafeRune(r) {
			for _, c := range []byte(s[i : i+n]) {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// unsafeRune reports whether escapeControl escapes r.
func unsafeRune(r rune) bool {
	return r == ' ' || r == utf8.RuneError || unicode.IsControl(r) ||
		r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r)
}

// Scrub returns err, or, if its text contains a non-empty secret, an
// error with the same chain (for errors.Is and errors.As) whose text shows
// "xxxxx" in place of each occurrence of the secret that stands on its own:
// not preceded nor followed by a letter or digit, nor followed by "://"
// (the scheme of a redacted URL in the message). Errors from clients and
// servers may quote what they were given, and the rest of their text
// ("connection refused", "WRONGPASS") is what the user needs to read. An
// occurrence inside a longer word is kept: a short or common password
// occurs in ordinary text by chance, and masking it there would both
// mangle the text ("contexxxxxt deadline") and point at the secret.
//
// Scrub is a last defence: a driver never puts a URL's raw text, nor its
// password, into an error in the first place (see [Redacted]).
func Scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	masked := msg
	for _, s := range secrets {
		masked = maskWord(masked, s)
	}
	if masked == msg {
		return err
	}
	return &scrubbedError{msg: masked, err: err}
}

// maskWord replaces each occurrence of secret in s that stands on its own
// (see [Scrub]) with "xxxxx".
func maskWord(s, secret string) string {
	if secret == "" || !strings.Contains(s, secret) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, secret)
		if i < 0 {
			break
		}
		end := i + len(secret)
		before, _ := utf8.DecodeLastRuneInString(s[:i])
		after, _ := utf8.DecodeRuneInString(s[end:])
		if i > 0 && isWordRune(before) || end < len(s) && isWordRune(after) || strings.HasPrefix(s[end:], "://") {
			b.WriteString(s[:i+1])
			s = s[i+1:]
			continue
		}
		b.WriteString(s[:i])
		b.WriteString(redactedText)
		s = s[end:]
	}
	b.WriteString(s)
	return b.String()
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// scrubbedError hides secrets in its text and keeps the chain for
// errors.Is and errors.As.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// Password returns the password of u, or "", for [Scrub].
func Password(u *url.URL) string {
	if u == nil || u.User == nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
}
