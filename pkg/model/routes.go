package model

import (
	"strconv"

	"google.golang.org/protobuf/proto"
)

// Route is a service port's part of a route configuration that every client listener
// of the port shares (see generator.Sharer): the protocol's routes for one key.
type Route struct {
	// Port is the service port the routes are for.
	Port uint32
	// Key is what selects the routes in the shared configuration, unique on the port:
	// for Dubbo, the interface the service serves.
	Key string
	// Config is the protocol's route configuration for the key.
	Config proto.Message
}

// RouteConfig is a route configuration served to sidecars over xDS, which a shared
// listener filter names.
type RouteConfig struct {
	// TypeURL is the xDS type of Config.
	TypeURL string
	// Name is what the listener filter asks for.
	Name   string
	Config proto.Message
}

// SharedPortAnnotation names the protocol and port (dubbo/20880) of an EnvoyFilter
// that every service of that port shares, in place of ServiceAnnotation.
const SharedPortAnnotation = "aeraki.io/port"

// SharedPortKey is the value of SharedPortAnnotation for a protocol's port.
func SharedPortKey(p Protocol, port uint32) string {
	return string(p) + "/" + strconv.FormatUint(uint64(port), 10)
}
