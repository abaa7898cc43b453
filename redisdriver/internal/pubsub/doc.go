// Package pubsub multiplexes Redis pub/sub subscriptions over shared
// connections (see [Mux]): it confirms each subscription before its
// subscriber goes on, replaces broken and silent connections, follows
// Cluster slot moves and MOVED replies to a channel's new owner, and
// Sentinel master switches. What a message means is its user's (see
// [Hooks]): the driver's release notifications and handoff grants.
package pubsub
