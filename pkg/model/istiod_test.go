package model

import "testing"

func TestParseIstioVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want IstioVersion
	}{
		{"1.30.3", IstioVersion{1, 30}},
		{"1.31.0", IstioVersion{1, 31}},
		{"1.31.0-rc.1", IstioVersion{1, 31}},
		{"1.31.0-alpha.0", IstioVersion{1, 31}},
		{"v1.32.1", IstioVersion{1, 32}},
		// What Istio's Makefile stamps on master: the VERSION file plus -dev.
		{"1.31-dev", IstioVersion{1, 30}},
		{"1.32-dev", IstioVersion{1, 31}},
		// A plain `go build`, a git revision, nothing: unknown.
		{"unknown", IstioVersion{}},
		{"b01690e6db7d4e0cbbd0a0a0a0a0a0a0a0a0a0a0", IstioVersion{}},
		{"b01690e6db7d-dirty", IstioVersion{}},
		{"", IstioVersion{}},
		{"1.31", IstioVersion{}},
		{"0.0-dev", IstioVersion{}},
	} {
		if got := ParseIstioVersion(tc.in); got != tc.want {
			t.Errorf("ParseIstioVersion(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestIstioVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v    IstioVersion
		want bool
	}{
		{IstioVersion{1, 30}, false},
		{IstioVersion{1, 31}, true},
		{IstioVersion{1, 32}, true},
		{IstioVersion{2, 0}, true},
		{IstioVersion{}, true}, // unknown: the newest
	} {
		if got := tc.v.AtLeast(Istio131); got != tc.want {
			t.Errorf("%v.AtLeast(1.31) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestIstiodFromIdentifier(t *testing.T) {
	// As istiod marshals IstioControlPlaneInstance (pilot/pkg/xds/xdsgen.go).
	got, err := IstiodFromIdentifier(`{"Component":"istiod","ID":"istiod-local","Info":{"version":"1.31-dev","revision":"b01690e6db7d","golang_version":"go1.26.8","status":"Clean","tag":"unknown"}}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Istiod{Reported: "1.31-dev", Version: IstioVersion{1, 30}}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got.String() != `1.30 (reports "1.31-dev")` {
		t.Errorf("String() = %q", got.String())
	}
	if _, err := IstiodFromIdentifier("not json"); err == nil {
		t.Error("no error for a bad identifier")
	}
}
