package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// startEtcd starts the etcd section's server, one etcd member (etcdtest:
// loopback ports, data on /dev/shm), pinned to CPU 0 beside the Redis
// servers, if a scenario of the section is selected. Without an etcd
// binary it returns nil and the section is skipped, unless one is
// required (DLOCK_REQUIRE_ETCD=1 or DLOCK_REQUIRE_REDIS=1, as CI sets).
func startEtcd(ctx context.Context, cfg *config) (*etcdtest.Cluster, error) {
	if !cfg.wants(scEtcdPair) && !cfg.wants(scEtcd8) && !cfg.wants(scEtcd32) && !cfg.wants(scEtcdHandoff) {
		return nil, nil
	}
	if _, err := etcdtest.Binary(); err != nil {
		if etcdtest.Required() {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "warning: %v: the etcd section is skipped\n", err)
		return nil, nil
	}
	var wrap []string
	if pinning() {
		wrap = []string{"taskset", "-c", "0"}
	}
	return etcdtest.Run(ctx, 1, wrap...)
}

// etcdVersion returns the etcd server's version, or "" without one.
func etcdVersion() string {
	bin, err := etcdtest.Binary()
	if err != nil {
		return ""
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "etcd Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
