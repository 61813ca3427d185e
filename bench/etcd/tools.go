//go:build tools

// Package etcdtools pins the etcd programs that bench/compare.sh builds from
// the Go module proxy: the server, etcdctl and etcd's benchmark tool. It is a
// separate module so that etcd's dependencies never enter cairn's go.mod, and
// `go install` cannot be used because etcd's go.mod files carry replace
// directives. Build output goes to bench/.cache (gitignored).
package etcdtools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
	_ "go.etcd.io/etcd/v3/tools/benchmark"
)
