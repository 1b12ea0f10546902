package xds

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// identity is the Kubernetes ServiceAccount the watcher connects as. istiod checks
// that the identity it verifies is in the namespace the xDS node declares, and has
// the declared service account, so the node declares what the token carries.
type identity struct {
	Namespace, ServiceAccount string
}

func (id identity) String() string {
	if id.ServiceAccount == "" {
		return id.Namespace
	}
	return id.Namespace + "/" + id.ServiceAccount
}

// readIdentity reads the identity a token file carries.
func readIdentity(file string) (identity, error) {
	token, err := readToken(file)
	if err != nil {
		return identity{}, err
	}
	id, err := tokenIdentity(token)
	if err != nil {
		return identity{}, fmt.Errorf("token file %s: %w", file, err)
	}
	return id, nil
}

// serviceAccountPrefix starts the subject of a ServiceAccount token.
const serviceAccountPrefix = "system:serviceaccount:"

// tokenClaims are the claims of a Kubernetes ServiceAccount token that name it.
type tokenClaims struct {
	Subject    string `json:"sub"`
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

// tokenIdentity decodes the payload of a ServiceAccount JWT without verifying it:
// istiod verifies it (TokenReview); we only need to declare the same identity.
func tokenIdentity(token string) (identity, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return identity{}, errors.New("not a JWT (want header.payload.signature)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return identity{}, fmt.Errorf("decoding the JWT payload: %w", err)
	}
	var claims tokenClaims
	if err := json.Unmarshal(payload, &claims); err != nil {
		return identity{}, fmt.Errorf("decoding the JWT claims: %w", err)
	}
	id := identity{Namespace: claims.Kubernetes.Namespace, ServiceAccount: claims.Kubernetes.ServiceAccount.Name}
	if id.Namespace == "" || id.ServiceAccount == "" {
		// Older tokens name the account in the subject only.
		id = subjectIdentity(claims.Subject)
	}
	if id.Namespace == "" || id.ServiceAccount == "" {
		return identity{}, fmt.Errorf("not a ServiceAccount token: subject %q, want %s<namespace>:<name>", claims.Subject, serviceAccountPrefix)
	}
	return id, nil
}

// subjectIdentity parses system:serviceaccount:<namespace>:<name>.
func subjectIdentity(sub string) identity {
	rest, ok := strings.CutPrefix(sub, serviceAccountPrefix)
	if !ok {
		return identity{}
	}
	ns, name, ok := strings.Cut(rest, ":")
	if !ok || strings.Contains(name, ":") {
		return identity{}
	}
	return identity{Namespace: ns, ServiceAccount: name}
}
