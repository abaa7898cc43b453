//go:build tools

// Package toxiproxyserver pins the toxiproxy server that redistest runs as
// a separate process for fault injection (redistest.Proxy). It is a module
// of its own so that neither the library's module nor its users require
// toxiproxy, prometheus or zerolog; redistest builds the server from here:
//
//	go build -o toxiproxy-server github.com/Shopify/toxiproxy/v2/cmd/server
package toxiproxyserver

import _ "github.com/Shopify/toxiproxy/v2/cmd/server"
