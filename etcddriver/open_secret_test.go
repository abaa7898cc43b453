package etcddriver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
)

// TestOpenErrorsHideSecrets opens etcd URLs that fail in every way a user
// can get one wrong, each with a password (plain, and one that is
// percent-encoded): no error may show the password, in either form.
func TestOpenErrorsHideSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, pw := range []struct{ inURL, plain string }{{"s3cretpw", "s3cretpw"}, {"s3c%2Fr%40tpw", "s3c/r@tpw"}} {
		for _, u := range []string{
			"etcd://u:" + pw.inURL + "@127.0.0.1:notaport/",
			"etcd://u:" + pw.inURL + "@127.0.0.1:1,bad host:2/",
			"etcd://u:" + pw.inURL + "@127.0.0.1:1,/",
			"etcd://u:" + pw.inURL + "@[::1/",
			"etcd://u:" + pw.inURL + "@127.0.0.1:1/?dial_timeout=x",
			"etcd://u:" + pw.inURL + "@127.0.0.1:1/?bogus=1",
			"etcd://u:" + pw.inURL + "@127.0.0.1:1/?skip_verify=true",
			"etcds://u:" + pw.inURL + "@127.0.0.1:1/?ca_file=/nonexistent",
			"etcd://u:" + pw.inURL + "@127.0.0.1:1/?dial_timeout=300ms",
			"etcds://u:" + pw.inURL + "@127.0.0.1:1/?dial_timeout=300ms",
		} {
			l, err := dlock.Open(ctx, u, nil)
			if err == nil {
				l.Close()
				t.Errorf("Open of a bad or unreachable URL succeeded")
				continue
			}
			for _, secret := range []string{pw.plain, pw.inURL} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("Open error shows the password %q: %v", secret, err)
				}
			}
		}
	}
}
