package etcddriver_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/etcddriver"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A Locker over an etcd client the application already has. The lease's
// fence is the lock key's create revision: pass it to the resource the
// lock protects, which refuses writes with a fence below the highest it saw.
func ExampleNew() {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            []string{"127.0.0.1:2379"},
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second, // drop a frozen member's connection
		DialKeepAliveTimeout: 2 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	locker := etcddriver.New(cli, &etcddriver.Options{Prefix: "myapp/locks/"})
	defer locker.Close() // before cli.Close: it does not close cli

	ctx := context.Background()
	err = locker.Do(ctx, "nightly-report", nil, func(ctx context.Context, lease *dlock.Lease) error {
		fmt.Println("running with fence", lease.Fence())
		return nil // ctx ends if the lease is lost
	})
	if err != nil {
		log.Fatal(err)
	}
}

// The same by URL, as dlock.Open takes it from configuration: the hosts
// are the cluster's client endpoints and the path is the key prefix.
func ExampleOpen() {
	ctx := context.Background()
	locker, err := dlock.Open(ctx, "etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/myapp/locks?ttl=30s", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()
}
