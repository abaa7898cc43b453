package driver_test

import (
	"context"
	"fmt"
	"net/url"

	"github.com/dlock-go/dlock/driver"
)

// A driver's open function checks its parameters with UnknownParams, reads
// its hosts with HostList, and prints the URL only through Redacted, which
// hides the values of parameters not declared with PublicParams.
func ExampleUnknownParams() {
	open := func(_ context.Context, u *url.URL) error {
		if err := driver.UnknownParams(u, "timeout"); err != nil {
			return err
		}
		hosts, err := driver.HostList(u, "2379")
		if err != nil {
			return err
		}
		fmt.Println("hosts:", hosts, "in", driver.Redacted(u))
		return nil
	}
	for _, raw := range []string{
		"etcd://user:pw@10.0.0.1,10.0.0.2:2380?timeout=1s&ttl=30s",
		"etcd://user:pw@10.0.0.1?pw=hunter2",
	} {
		u, _, err := driver.ParseURL(raw)
		if err == nil {
			err = open(context.Background(), u)
		}
		if err != nil {
			fmt.Println(err)
		}
	}
	// Output:
	// hosts: [10.0.0.1:2379 10.0.0.2:2380] in etcd://xxxxx@10.0.0.1,10.0.0.2:2380?timeout=xxxxx&ttl=30s
	// dlock: invalid argument: unknown URL parameter pw in etcd://xxxxx@10.0.0.1?pw=xxxxx
}

// RedactURL hides secrets in text that is not even a URL.
func ExampleRedactURL() {
	fmt.Println(driver.RedactURL("redis:default:S3CRET@10.0.0.5:6379"))
	fmt.Println(driver.RedactURL("redis://default:/S3CRET@10.0.0.5:6379/0?ttl=5s&auth=S3CRET"))
	// Output:
	// xxxxx@10.0.0.5:6379
	// redis://xxxxx@10.0.0.5:6379/0?ttl=5s&auth=xxxxx
}
