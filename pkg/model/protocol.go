// Package model holds the inputs of the generators: services resolved from
// Istio config, their ports and protocols, and the EnvoyFilters they produce.
package model

import "strings"

// Protocol is the application protocol of a service port, taken from its name.
type Protocol string

// The protocols a port name can declare. Anything else is plain TCP and left to Istio.
const (
	TCP       Protocol = "tcp"
	Dubbo     Protocol = "dubbo"
	Thrift    Protocol = "thrift"
	Kafka     Protocol = "kafka"
	ZooKeeper Protocol = "zookeeper"
	Redis     Protocol = "redis"
)

// Protocols lists every protocol this project generates filters for, in a stable order.
var Protocols = []Protocol{Dubbo, Thrift, Kafka, ZooKeeper, Redis}

// ParsePortName returns the protocol a port name declares: `tcp-<protocol>` optionally
// followed by `-anything`, case-insensitive. Every other name is plain TCP.
func ParsePortName(name string) Protocol {
	parts := strings.SplitN(strings.ToLower(name), "-", 3)
	if len(parts) < 2 || parts[0] != "tcp" {
		return TCP
	}
	p := Protocol(parts[1])
	if p.Supported() {
		return p
	}
	return TCP
}

// Supported reports whether p is a protocol with a generator.
func (p Protocol) Supported() bool {
	for _, s := range Protocols {
		if p == s {
			return true
		}
	}
	return false
}
