// Package tests holds dlock's integration tests that need dependencies the
// library's users must not inherit (containers, the linearizability
// checker). It is a module of its own so that the root module's go.mod
// requires only what the library runs on.
package tests
