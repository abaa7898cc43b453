package redisdriver

import (
	"strings"
)

// refusedCommand returns the command that a NOPERM error says the user may
// not run ("… has no permissions to run the 'publish' command"), in
// lower case, or "" when the refusal is of a key or a channel. go-redis
// has no typed answer for which permission was missing, so the server's
// words are read: Redis 7 and Valkey both quote the command after "run
// the".
func refusedCommand(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	_, rest, ok := strings.Cut(msg, "to run the '")
	if !ok {
		return ""
	}
	cmd, _, ok := strings.Cut(rest, "'")
	if !ok || cmd == "" || strings.ContainsAny(cmd, " \t\r\n") {
		return ""
	}
	return strings.ToLower(cmd)
}
