package xds

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestTokenIdentity(t *testing.T) {
	jwt := func(payload string) string {
		return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
	}
	for _, tc := range []struct {
		name    string
		token   string
		want    identity
		wantErr string
	}{
		{
			name:  "projected token",
			token: jwt(`{"sub":"system:serviceaccount:istio-system:aeraki","kubernetes.io":{"namespace":"istio-system","serviceaccount":{"name":"aeraki","uid":"u"}}}`),
			want:  identity{"istio-system", "aeraki"},
		},
		{name: "subject only", token: jwt(`{"sub":"system:serviceaccount:aeraki-system:controller"}`), want: identity{"aeraki-system", "controller"}},
		{
			name:  "kubernetes.io claims win",
			token: jwt(`{"sub":"system:serviceaccount:a:b","kubernetes.io":{"namespace":"c","serviceaccount":{"name":"d"}}}`),
			want:  identity{"c", "d"},
		},
		{
			name:  "padded payload",
			token: "h." + base64.URLEncoding.EncodeToString([]byte(`{"sub":"system:serviceaccount:ns:sa1"}`)) + ".s",
			want:  identity{"ns", "sa1"},
		},
		{name: "not a JWT", token: "abc", wantErr: "not a JWT"},
		{name: "payload not base64", token: "h.!!!.s", wantErr: "decoding the JWT payload"},
		{name: "payload not JSON", token: jwt(`nope`), wantErr: "decoding the JWT claims"},
		{name: "user token", token: jwt(`{"sub":"alice"}`), wantErr: "not a ServiceAccount token"},
		{name: "malformed subject", token: jwt(`{"sub":"system:serviceaccount:ns"}`), wantErr: "not a ServiceAccount token"},
		{name: "subject with extra part", token: jwt(`{"sub":"system:serviceaccount:ns:a:b"}`), wantErr: "not a ServiceAccount token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tokenIdentity(tc.token)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("tokenIdentity = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
