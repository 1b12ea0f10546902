// Package dubbodemo is the Dubbo demo provider and consumer, on dubbo-go with
// the dubbo protocol and hessian2 serialization, without a registry: the
// consumer dials the provider's address (in the mesh, the Service's VIP).
package dubbodemo

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"dubbo.apache.org/dubbo-go/v3"
	"dubbo.apache.org/dubbo-go/v3/client"
	"dubbo.apache.org/dubbo-go/v3/common/constant"
	"dubbo.apache.org/dubbo-go/v3/graceful_shutdown"
	_ "dubbo.apache.org/dubbo-go/v3/imports" // protocols, filters and proxies dubbo-go looks up by name
	"dubbo.apache.org/dubbo-go/v3/protocol"
	"dubbo.apache.org/dubbo-go/v3/server"
)

const (
	// Interface is the Java interface name the demo's services and routes use.
	Interface = "org.apache.dubbo.samples.basic.api.DemoService"
	// Method is the method the consumer calls.
	Method = "sayHello"
	// Port is the dubbo protocol's usual port.
	Port = 20880
)

// DemoService is the provider: sayHello(name) answers with the provider's
// host and version.
type DemoService struct {
	log           *slog.Logger
	version, host string
}

// SayHello implements sayHello.
func (s *DemoService) SayHello(_ context.Context, name string) (string, error) {
	s.log.Info("sayHello", "name", name)
	return fmt.Sprintf("hello %s, from %s %s", name, s.host, s.version), nil
}

// MethodMapper gives SayHello its Java name.
func (*DemoService) MethodMapper() map[string]string {
	return map[string]string{"SayHello": Method}
}

// Serve exports DemoService on port with the dubbo protocol and hessian2 and
// serves until the process ends (dubbo-go has no way to stop a server).
func Serve(log *slog.Logger, port int, version, host string) error {
	ins, err := dubbo.NewInstance(
		dubbo.WithName("dubbo-sample-provider"),
		dubbo.WithProtocol(protocol.WithDubbo(), protocol.WithPort(port)),
		dubbo.WithShutdown(graceful_shutdown.WithoutInternalSignal()),
	)
	if err != nil {
		return fmt.Errorf("dubbo instance: %w", err)
	}
	srv, err := ins.NewServer()
	if err != nil {
		return fmt.Errorf("dubbo server: %w", err)
	}
	if err := srv.RegisterService(&DemoService{log: log, version: version, host: host},
		server.WithInterface(Interface), server.WithSerialization(constant.Hessian2Serialization), server.WithNotRegister()); err != nil {
		return fmt.Errorf("register %s: %w", Interface, err)
	}
	return srv.Serve()
}

// Client calls sayHello on one provider address.
type Client struct {
	conn *client.Connection
	name string
}

// NewClient returns a consumer of the provider at addr (host:port) that says
// hello as name.
func NewClient(addr, name string, timeout time.Duration) (*Client, error) {
	cli, err := client.NewClient(
		client.WithClientProtocolDubbo(),
		client.WithClientSerialization(constant.Hessian2Serialization),
		client.WithClientRequestTimeout(timeout),
		client.WithClientShutdown(graceful_shutdown.WithoutInternalSignal()),
	)
	if err != nil {
		return nil, fmt.Errorf("dubbo client: %w", err)
	}
	conn, err := cli.Dial(Interface, client.WithURL("dubbo://"+addr))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &Client{conn: conn, name: name}, nil
}

// Call says hello and returns the reply.
func (c *Client) Call(ctx context.Context) (string, error) {
	var reply string
	if err := c.conn.CallUnary(ctx, []any{c.name}, &reply, Method); err != nil {
		return "", fmt.Errorf("%s.%s: %w", Interface, Method, err)
	}
	return reply, nil
}

// Round is Call for app.Loop.
func (c *Client) Round(ctx context.Context, _ int) (string, error) { return c.Call(ctx) }
