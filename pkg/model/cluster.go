package model

import (
	"strconv"
	"strings"
)

// OutboundClusterName is the name Istio gives the client-side cluster of a host's port
// (and subset, empty for none): outbound|<port>|<subset>|<host>.
func OutboundClusterName(port uint32, subset, host string) string {
	return strings.Join([]string{"outbound", strconv.FormatUint(uint64(port), 10), subset, host}, "|")
}

// InboundClusterName is the name Istio gives the server-side cluster of a workload
// port: inbound|<port>||.
func InboundClusterName(port uint32) string {
	return "inbound|" + strconv.FormatUint(uint64(port), 10) + "||"
}
