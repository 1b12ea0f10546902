package model

import "testing"

func TestClusterNames(t *testing.T) {
	if got, want := OutboundClusterName(20880, "", "a.b.svc.cluster.local"), "outbound|20880||a.b.svc.cluster.local"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := OutboundClusterName(9090, "v1", "x.example"), "outbound|9090|v1|x.example"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := InboundClusterName(20880), "inbound|20880||"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
