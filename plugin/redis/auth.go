package redis

import (
	"fmt"
	"unicode/utf8"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
)

// credentials are a Redis password and optional ACL username as Envoy data sources.
type credentials struct {
	username *core.DataSource // nil: the default user
	password *core.DataSource
}

// Secret keys used when the reference names none.
const (
	DefaultPasswordKey = "password"
	DefaultUsernameKey = "username"
)

// resolveAuth reads credentials, from the object itself or from a Secret in its
// namespace. Errors name the Secret and key, never a value.
func resolveAuth(ctx *generator.Context, a *redisspec.Auth, namespace, where string) (*credentials, error) {
	if a == nil {
		return nil, nil
	}
	switch {
	case a.Plain != nil && a.Secret != nil, a.Plain == nil && a.Secret == nil:
		return nil, invalid("%s: set exactly one of secret and plain", where)
	case a.Plain != nil:
		if a.Plain.Password == "" {
			return nil, invalid("%s.plain.password is empty", where)
		}
		c := &credentials{password: dataSource([]byte(a.Plain.Password))}
		if a.Plain.Username != "" {
			c.username = dataSource([]byte(a.Plain.Username))
		}
		return c, nil
	}
	ref := a.Secret
	if ref.Name == "" {
		return nil, invalid("%s.secret.name is empty", where)
	}
	secret := ctx.Secret(namespace, ref.Name)
	if secret != nil && secret.Forbidden {
		return nil, &configError{reason: redisspec.ReasonSecretNotGranted, msg: fmt.Sprintf(
			"%s: aeraki may not read Secrets in namespace %s; grant it: kubectl -n %s create rolebinding aeraki-secret-reader "+
				"--clusterrole=aeraki-secret-reader --serviceaccount=%s:aeraki", where, namespace, namespace, ctx.RootNamespace)}
	}
	if secret == nil {
		return nil, &configError{reason: redisspec.ReasonSecretNotFound, msg: fmt.Sprintf("%s: Secret %s/%s not found", where, namespace, ref.Name)}
	}
	data, name := secret.Data, namespace+"/"+ref.Name
	passwordKey := ref.PasswordName()
	if passwordKey == "" {
		passwordKey = DefaultPasswordKey
	}
	password, ok := data[passwordKey]
	switch {
	case !ok:
		return nil, &configError{reason: redisspec.ReasonSecretKeyNotFound, msg: fmt.Sprintf("%s: Secret %s has no key %q for the password", where, name, passwordKey)}
	case len(password) == 0:
		return nil, invalid("%s: Secret %s key %q (the password) is empty", where, name, passwordKey)
	}
	c := &credentials{password: dataSource(password)}
	usernameKey := ref.UsernameName()
	named := usernameKey != ""
	if !named {
		usernameKey = DefaultUsernameKey
	}
	username, ok := data[usernameKey]
	switch {
	case !ok && named:
		return nil, &configError{reason: redisspec.ReasonSecretKeyNotFound, msg: fmt.Sprintf("%s: Secret %s has no key %q for the username", where, name, usernameKey)}
	case len(username) == 0 && named:
		return nil, invalid("%s: Secret %s key %q (the username) is empty", where, name, usernameKey)
	case len(username) > 0:
		c.username = dataSource(username)
	}
	return c, nil
}

// dataSource holds a credential inline: as a string when it is UTF-8 text, as bytes
// otherwise (a proto string must be UTF-8; Redis passwords are binary-safe).
func dataSource(v []byte) *core.DataSource {
	if utf8.Valid(v) {
		return &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: string(v)}}
	}
	return &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: v}}
}
