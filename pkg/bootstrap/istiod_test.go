package bootstrap

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"aeraki.io/aeraki/pkg/model"
)

func TestNextIstiod(t *testing.T) {
	old := model.NewIstiod("1.31-dev")
	refused := grpcstatus.Error(codes.Unauthenticated, "authentication required")
	down := errors.New("connection refused")
	for _, c := range []struct {
		name     string
		v        model.Istiod
		err      error
		known    bool
		failures int
		synced   bool
		want     model.Istiod
		ok       bool
	}{
		{name: "answer", v: old, want: old, ok: true},
		{name: "answer without a version: newest", v: model.NewIstiod("unknown"), want: model.NewIstiod("unknown"), ok: true},
		{name: "refused: the oldest", err: refused, want: model.UnsaidIstiod, ok: true},
		{name: "istiod not up yet", err: down, failures: 0},
		{name: "failing before the config synced", err: down, failures: 0, synced: false},
		{name: "failing with the config synced, a few times", err: down, failures: istiodTries - 1, synced: true},
		{name: "failing with the config synced: the oldest", err: down, failures: istiodTries, synced: true, want: model.UnsaidIstiod, ok: true},
		{name: "failing after an answer keeps it", err: down, known: true, failures: istiodTries, synced: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok, _ := nextIstiod(c.v, c.err, c.known, c.failures, c.synced)
			if got != c.want || ok != c.ok {
				t.Errorf("got %v, %v; want %v, %v", got, ok, c.want, c.ok)
			}
		})
	}
	if got := model.UnsaidIstiod.Version; got.AtLeast(model.Istio131) {
		t.Errorf("an istiod that did not say its version is taken for %s, which reads MERGE_AND_REPLACE_LIST", got)
	}
}
