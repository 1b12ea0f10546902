// Package thriftdemo is the Thrift demo server and client: HelloService over
// the framed transport and the binary protocol, the defaults of Envoy's
// thrift_proxy.
package thriftdemo

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"aeraki.io/aeraki/demo/apps/thrift/gen-go/hello"
)

// idleTimeout drops a server connection that sends nothing for that long; it
// also bounds how long a graceful stop waits for connected clients.
const idleTimeout = 10 * time.Second

var conf = &thrift.TConfiguration{ConnectTimeout: 2 * time.Second, SocketTimeout: 5 * time.Second}

type handler struct {
	log           *slog.Logger
	version, host string
}

func (h *handler) SayHello(_ context.Context, name string) (*hello.HelloReply, error) {
	h.log.Info("sayHello", "name", name)
	return &hello.HelloReply{
		Message: fmt.Sprintf("hello %s, from %s %s", name, h.host, h.version),
		Version: h.version,
		Host:    h.host,
	}, nil
}

// Server serves HelloService; its replies carry version and host.
type Server struct {
	srv    *thrift.TSimpleServer
	socket *thrift.TServerSocket
}

// Listen listens on addr (host:port; port 0 picks one) for a server whose
// replies carry version and host. Call Serve next.
func Listen(log *slog.Logger, addr, version, host string) (*Server, error) {
	socket, err := thrift.NewTServerSocketTimeout(addr, idleTimeout)
	if err != nil {
		return nil, err
	}
	if err := socket.Listen(); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	processor := hello.NewHelloServiceProcessor(&handler{log: log, version: version, host: host})
	srv := thrift.NewTSimpleServer4(processor, socket,
		thrift.NewTFramedTransportFactoryConf(thrift.NewTTransportFactory(), conf),
		thrift.NewTBinaryProtocolFactoryConf(conf))
	return &Server{srv: srv, socket: socket}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.socket.Addr() }

// Serve serves until Stop.
func (s *Server) Serve() error { return s.srv.Serve() }

// Stop stops accepting and waits for the open connections to end.
func (s *Server) Stop() error { return s.srv.Stop() }

// Client calls sayHello on one connection, opened again after an error.
type Client struct {
	addr, name string
	trans      thrift.TTransport
	client     *hello.HelloServiceClient
}

// NewClient returns a client of the server at addr that says hello as name.
func NewClient(addr, name string) *Client { return &Client{addr: addr, name: name} }

// Call says hello and returns the reply.
func (c *Client) Call(ctx context.Context) (*hello.HelloReply, error) {
	if c.client == nil {
		trans := thrift.NewTFramedTransportConf(thrift.NewTSocketConf(c.addr, conf), conf)
		if err := trans.Open(); err != nil {
			return nil, fmt.Errorf("connect to %s: %w", c.addr, err)
		}
		c.trans = trans
		c.client = hello.NewHelloServiceClientFactory(trans, thrift.NewTBinaryProtocolFactoryConf(conf))
	}
	reply, err := c.client.SayHello(ctx, c.name)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("sayHello: %w", err)
	}
	return reply, nil
}

// Round is Call for app.Loop.
func (c *Client) Round(ctx context.Context, _ int) (string, error) {
	reply, err := c.Call(ctx)
	if err != nil {
		return "", err
	}
	return reply.Message, nil
}

// Close closes the connection, if any.
func (c *Client) Close() {
	if c.trans != nil {
		_ = c.trans.Close()
	}
	c.trans, c.client = nil, nil
}
