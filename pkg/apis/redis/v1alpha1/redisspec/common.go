package redisspec

// Auth gives Redis credentials, either from a Secret (preferred) or written in the
// object. Exactly one of the two is set.
//
// +kubebuilder:validation:XValidation:rule="has(self.secret) != has(self.plain)",message="set exactly one of secret and plain"
type Auth struct {
	// Secret reads the credentials from a Secret in the object's namespace.
	// +optional
	Secret *SecretReference `json:"secret,omitempty"`
	// Plain holds the credentials in the object itself: anyone who can read the
	// object can read them. Prefer secret.
	// +optional
	Plain *PlainAuth `json:"plain,omitempty"`
}

// SecretReference names a Secret in the object's namespace and the keys that hold
// the credentials. The keys' fields have Aeraki's names (passwordField,
// usernameField); passwordKey and usernameKey, this API's earlier names, mean the
// same and may be set instead, not besides with another value.
//
// +kubebuilder:validation:XValidation:rule="!has(self.passwordField) || !has(self.passwordKey) || self.passwordField == self.passwordKey",message="passwordField and passwordKey name the same key: set one"
// +kubebuilder:validation:XValidation:rule="!has(self.usernameField) || !has(self.usernameKey) || self.usernameField == self.usernameKey",message="usernameField and usernameKey name the same key: set one"
type SecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// PasswordField is the key of the password; "password" when empty. It must exist.
	// +optional
	PasswordField string `json:"passwordField,omitempty"`
	// UsernameField is the key of the username (Redis 6 ACL users); "username" when
	// empty. When empty and the Secret has no "username" key, only the password is
	// used (Redis before 6, or the default user); a key named here must exist.
	// +optional
	UsernameField string `json:"usernameField,omitempty"`
	// PasswordKey is passwordField's earlier name.
	// +optional
	PasswordKey string `json:"passwordKey,omitempty"`
	// UsernameKey is usernameField's earlier name.
	// +optional
	UsernameKey string `json:"usernameKey,omitempty"`
}

// PasswordName is the key of the password the reference names, under either name;
// empty for the default.
func (r *SecretReference) PasswordName() string {
	if r.PasswordField != "" {
		return r.PasswordField
	}
	return r.PasswordKey
}

// UsernameName is the key of the username the reference names, under either name;
// empty for the default.
func (r *SecretReference) UsernameName() string {
	if r.UsernameField != "" {
		return r.UsernameField
	}
	return r.UsernameKey
}

// PlainAuth holds credentials in the object itself.
type PlainAuth struct {
	// Username for Redis 6 ACLs; empty for the default user.
	// +optional
	Username string `json:"username,omitempty"`
	// Password.
	// +kubebuilder:validation:MinLength=1
	Password string `json:"password"`
}

// Reasons of the Ready condition.
const (
	// ReasonPending: the controller has not received the mesh config yet, or not
	// translated the object's current generation.
	ReasonPending = "Pending"
	// ReasonAccepted: the object is valid and applies to at least one service.
	ReasonAccepted = "Accepted"
	// ReasonNoMatchingService: no service with a tcp-redis port has any of its hosts.
	ReasonNoMatchingService = "NoMatchingService"
	// ReasonOtherNamespace: the services with its hosts are in another namespace,
	// which an object outside Istio's root namespace may not configure.
	ReasonOtherNamespace = "OtherNamespace"
	// ReasonSecretNotFound: the auth Secret does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretNotGranted: the controller may not read Secrets of the object's
	// namespace; the message says how to grant it.
	ReasonSecretNotGranted = "SecretNotGranted"
	// ReasonSecretKeyNotFound: the auth Secret lacks a key it must have.
	ReasonSecretKeyNotFound = "SecretKeyNotFound"
	// ReasonConflict: another object already configures the same host, or two
	// routes of the object match the same keys.
	ReasonConflict = "Conflict"
	// ReasonInvalid: the object is valid to the API server but cannot be turned into
	// proxy config (for example a route to a host that is no Redis service).
	ReasonInvalid = "Invalid"
	// ReasonServiceFailed: a service the object configures cannot be generated for a
	// reason outside the object (another port of the service, a second service with
	// the same host and port): it keeps its earlier EnvoyFilters, and the object is not
	// in effect there. The service's Warning Events say what to fix.
	ReasonServiceFailed = "ServiceFailed"
	// ReasonUnreadable: the object as stored cannot be read with this API (written in
	// another form, or under another schema); the message says what could not be
	// read. The services it names keep their earlier EnvoyFilters until it is
	// written again.
	ReasonUnreadable = "Unreadable"
	// ReasonIstiodTooOld: the object asks for a setting the connected istiod cannot
	// apply; the message names the Istio release it needs. Nothing of the service is
	// written until it can be (its earlier EnvoyFilters stay).
	ReasonIstiodTooOld = "IstiodTooOld"
	// ReasonRejectedByProxies: proxies reject the EnvoyFilters of a service the
	// object configures (a proxy build without the filter, a value Envoy refuses);
	// the message names one proxy and Envoy's error, and what the controller did.
	ReasonRejectedByProxies = "RejectedByProxies"
)
