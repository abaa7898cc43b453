package driver

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// refreshParallel bounds the Refresh calls RefreshBatch makes at once for a
// driver that cannot batch.
const refreshParallel = 16

// RefreshBatch refreshes reqs on d and returns one error per request, in
// order: in one call if d is a [BatchRefresher], else with one Refresh per
// request, a few at a time. A BatchRefresher whose every result wraps
// errors.ErrUnsupported cannot batch after all (a wrapping driver; see the
// package documentation), and is refreshed request by request too. A
// BatchRefresher that returns the wrong number of results fails every
// request. Wrappers and quorum drivers use it to offer batching over
// drivers that may lack it.
func RefreshBatch(ctx context.Context, d Locker, reqs []RefreshRequest) []error {
	if br, ok := d.(BatchRefresher); ok {
		errs := br.RefreshBatch(ctx, reqs)
		switch {
		case len(errs) == len(reqs) && !allUnsupported(errs):
			return errs
		case len(errs) != len(reqs):
			bad := fmt.Errorf("dlock: RefreshBatch of %T returned %d results for %d requests", d, len(errs), len(reqs))
			errs = make([]error, len(reqs))
			for i := range errs {
				errs[i] = bad
			}
			return errs
		}
	}
	errs := make([]error, len(reqs))
	sem := make(chan struct{}, refreshParallel)
	var wg sync.WaitGroup
	for i, r := range reqs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = d.Refresh(ctx, r.Key, r.Token, r.TTL)
		})
	}
	wg.Wait()
	return errs
}

// allUnsupported reports whether errs is not empty and every error in it
// wraps errors.ErrUnsupported.
func allUnsupported(errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, errors.ErrUnsupported) {
			return false
		}
	}
	return len(errs) > 0
}
