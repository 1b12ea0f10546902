// Package thrift holds the demo's Thrift IDL; the Go code generated from it is
// committed in gen-go (Debian's thrift-compiler: apt-get install thrift-compiler).
package thrift

//go:generate thrift -r --gen go:package_prefix=aeraki.io/aeraki/demo/apps/thrift/gen-go/,skip_remote -out gen-go hello.thrift
//go:generate gofmt -w gen-go
