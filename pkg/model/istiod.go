package model

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
)

// IstioVersion is the Istio minor release whose features an istiod has. The zero value
// is unknown, which is treated as the newest Istio (see Istiod).
type IstioVersion struct{ Major, Minor int }

// Istio releases whose features the generators ask for.
var (
	// Istio131 added the EnvoyFilter operation MERGE_AND_REPLACE_LIST. An older
	// istiod cannot decode an EnvoyFilter that uses it, and then cannot list
	// EnvoyFilters at all: no EnvoyFilter change reaches any sidecar while it exists.
	Istio131 = IstioVersion{1, 31}
	// IstioOldest is the oldest Istio aeraki is tested with (README, "Istio
	// compatibility"): what an istiod that does not say its version is taken for.
	IstioOldest = IstioVersion{1, 30}
)

// Known reports whether v names a release.
func (v IstioVersion) Known() bool { return v != IstioVersion{} }

// AtLeast reports whether v has the features of release min; an unknown v has them all.
func (v IstioVersion) AtLeast(minimum IstioVersion) bool {
	if !v.Known() {
		return true
	}
	return v.Major > minimum.Major || v.Major == minimum.Major && v.Minor >= minimum.Minor
}

func (v IstioVersion) String() string {
	if !v.Known() {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d", v.Major, v.Minor)
}

// Istiod is what the controller knows of the istiod it writes for: the version it
// reports and the release whose features that version promises. The zero value is an
// istiod of unknown version, generated for as the newest.
type Istiod struct {
	// Reported is the version string istiod reports ("1.30.3", "1.31-dev",
	// "unknown", a git revision); "" when it reported none.
	Reported string
	// Version is the release Reported promises (see ParseIstioVersion).
	Version IstioVersion
}

// NewIstiod reads a reported version.
func NewIstiod(reported string) Istiod {
	return Istiod{Reported: reported, Version: ParseIstioVersion(reported)}
}

// UnsaidIstiod is an istiod that did not say its version (it refused the request):
// taken for the oldest Istio, so that nothing it might not decode is written.
var UnsaidIstiod = Istiod{Version: IstioOldest}

func (i Istiod) String() string {
	if i == UnsaidIstiod {
		return i.Version.String() + " (assumed: istiod did not say its version; set --istiod-version)"
	}
	if i.Reported == "" || i.Reported == i.Version.String() {
		return i.Version.String()
	}
	return fmt.Sprintf("%s (reports %q)", i.Version, i.Reported)
}

var (
	// A release or a pre-release of one: 1.30.3, 1.31.0-rc.1, 1.31.0-alpha.0.
	releaseVersion = regexp.MustCompile(`^v?(\d+)\.(\d+)\.\d+(-[0-9A-Za-z.-]+)?$`)
	// A development build: Istio's Makefile reports the VERSION file plus -dev.
	devVersion = regexp.MustCompile(`^v?(\d+)\.(\d+)-dev$`)
)

// ParseIstioVersion reads the version istiod reports (pkg/version's BuildInfo.Version):
//   - a release or pre-release "X.Y.Z[-pre]" has the features of X.Y;
//   - a development build "X.Y-dev" is master on its way to X.Y (Istio's VERSION file
//     plus -dev) and promises only the features of the previous release X.(Y-1): the
//     file is bumped when development of X.Y begins and may still say X.Y after X.Y's
//     release (master between 1.30.0-alpha.1 and 1.31.0-alpha.0, without 1.31's
//     MERGE_AND_REPLACE_LIST, and master after 1.31.0, with it, both report 1.31-dev);
//   - anything else (a plain `go build` reports "unknown", a build without VERSION
//     reports its git revision) is unknown, the zero value.
func ParseIstioVersion(s string) IstioVersion {
	if m := releaseVersion.FindStringSubmatch(s); m != nil {
		return version(m[1], m[2], 0)
	}
	if m := devVersion.FindStringSubmatch(s); m != nil {
		return version(m[1], m[2], 1)
	}
	return IstioVersion{}
}

func version(major, minor string, back int) IstioVersion {
	x, err1 := strconv.Atoi(major)
	y, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil || y-back < 0 || x == 0 {
		return IstioVersion{}
	}
	return IstioVersion{x, y - back}
}

// IstiodFromIdentifier reads the control plane identifier istiod puts in its debug
// responses (DiscoveryResponse.control_plane.identifier: JSON of the component, its
// pod and its build info).
func IstiodFromIdentifier(identifier string) (Istiod, error) {
	var id struct {
		Info struct {
			Version string `json:"version"`
		}
	}
	if err := json.Unmarshal([]byte(identifier), &id); err != nil {
		return Istiod{}, fmt.Errorf("reading istiod's control plane identifier: %w", err)
	}
	return NewIstiod(id.Info.Version), nil
}
