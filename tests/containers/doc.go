// Package containers runs dlock's conformance suite on Redis and Valkey
// servers in containers started with testcontainers-go, the way a user with
// Docker on a laptop runs it, and the way an application or a third-party
// driver runs it in its own integration tests (see the example in
// example_test.go).
//
// The images are DLOCK_REDIS_IMAGE (default redis:7) and
// DLOCK_VALKEY_IMAGE (default valkey/valkey:8). Without a Docker engine
// (DOCKER_HOST unset and no /var/run/docker.sock) the tests skip; with
// DLOCK_REQUIRE_CONTAINERS=1, as CI sets, they fail instead, and so does
// any container that cannot be started: there is no fallback to server
// processes here. CI runs them against a private dockerd in a network
// namespace of its own, with images built from the servers it installed
// (.ci/containers).
package containers
