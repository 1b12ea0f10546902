package redis

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	redis "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/redis_proxy/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/host"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/envoyfilter"
	"aeraki.io/aeraki/pkg/model"
)

// configError is a user error in a RedisService or RedisDestination, with the Reason
// its Ready condition reports. Its message never holds a credential.
type configError struct {
	reason string
	msg    string
}

func (e *configError) Error() string { return e.msg }

func invalid(format string, args ...any) error {
	return &configError{reason: v1alpha1.ReasonInvalid, msg: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &configError{reason: v1alpha1.ReasonConflict, msg: fmt.Sprintf(format, args...)}
}

// reasonOf is the Ready reason for an error of the resolution: Invalid unless the
// error says otherwise.
func reasonOf(err error) string {
	var ce *configError
	if errors.As(err, &ce) {
		return ce.reason
	}
	return v1alpha1.ReasonInvalid
}

// proxyConfig is what a RedisService gives the redis_proxy filters of one service
// port. Without a RedisService it is the default: timeout, every key to the service.
type proxyConfig struct {
	// outbound holds every client-side setting.
	outbound *redis.RedisProxy_ConnPoolSettings
	// inbound holds what the server side keeps: op timeout and command stats.
	inbound  *redis.RedisProxy_ConnPoolSettings
	routes   []*redis.RedisProxy_PrefixRoutes_Route
	catchAll *redis.RedisProxy_PrefixRoutes_Route // nil: every other key to the service
	// caseInsensitive makes prefix routes ignore case.
	caseInsensitive bool
	faults          []*redis.RedisProxy_RedisFault
	// auth is what clients must send with AUTH to their sidecar.
	auth *credentials
}

// credentials are a Redis password and optional ACL username as Envoy data sources.
type credentials struct {
	username *core.DataSource // nil: the default user
	password *core.DataSource
}

// resolveService turns the RedisService bound to a service (nil for none) into the
// redis_proxy settings of one of its ports. The generator and Check both call it.
func resolveService(ctx *envoyfilter.Context, svc *model.Service, port *model.Port, rs *v1alpha1.RedisService) (*proxyConfig, error) {
	cfg := &proxyConfig{
		outbound: &redis.RedisProxy_ConnPoolSettings{OpTimeout: durationpb.New(DefaultOpTimeout)},
		inbound:  &redis.RedisProxy_ConnPoolSettings{OpTimeout: durationpb.New(DefaultOpTimeout)},
	}
	if rs == nil {
		return cfg, nil
	}
	spec := &rs.Spec
	if err := cfg.applySettings(spec.Settings); err != nil {
		return nil, err
	}
	if spec.Settings != nil {
		auth, err := resolveAuth(ctx, spec.Settings.Auth, rs.Namespace, "spec.settings.auth")
		if err != nil {
			return nil, err
		}
		cfg.auth = auth
	}
	d := &destinations{ctx: ctx, svc: svc, port: port, namespace: rs.Namespace}
	if err := cfg.applyRoutes(d, spec.Redis); err != nil {
		return nil, err
	}
	for i := range spec.Faults {
		f, err := fault(&spec.Faults[i], fmt.Sprintf("spec.faults[%d]", i))
		if err != nil {
			return nil, err
		}
		cfg.faults = append(cfg.faults, f)
	}
	return cfg, nil
}

// readPolicies maps the API's read policies to Envoy's of the same name.
var readPolicies = map[v1alpha1.ReadPolicy]redis.RedisProxy_ConnPoolSettings_ReadPolicy{
	"":                               redis.RedisProxy_ConnPoolSettings_MASTER,
	v1alpha1.ReadPolicyMaster:        redis.RedisProxy_ConnPoolSettings_MASTER,
	v1alpha1.ReadPolicyPreferMaster:  redis.RedisProxy_ConnPoolSettings_PREFER_MASTER,
	v1alpha1.ReadPolicyReplica:       redis.RedisProxy_ConnPoolSettings_REPLICA,
	v1alpha1.ReadPolicyPreferReplica: redis.RedisProxy_ConnPoolSettings_PREFER_REPLICA,
	v1alpha1.ReadPolicyAny:           redis.RedisProxy_ConnPoolSettings_ANY,
}

func (cfg *proxyConfig) applySettings(s *v1alpha1.RedisSettings) error {
	if s == nil {
		return nil
	}
	out := cfg.outbound
	if s.OpTimeout != nil {
		d, err := duration(s.OpTimeout, "spec.settings.opTimeout", false)
		if err != nil {
			return err
		}
		out.OpTimeout = d
		cfg.inbound.OpTimeout = d
	}
	out.EnableCommandStats = s.EnableCommandStats
	cfg.inbound.EnableCommandStats = s.EnableCommandStats
	if s.MaxBufferSizeBeforeFlush != nil {
		n, err := uint32Of(*s.MaxBufferSizeBeforeFlush, "spec.settings.maxBufferSizeBeforeFlush", 0)
		if err != nil {
			return err
		}
		out.MaxBufferSizeBeforeFlush = n
	}
	if s.BufferFlushTimeout != nil {
		d, err := duration(s.BufferFlushTimeout, "spec.settings.bufferFlushTimeout", true)
		if err != nil {
			return err
		}
		out.BufferFlushTimeout = d
	}
	if s.MaxUpstreamUnknownConnections != nil {
		n, err := uint32Of(*s.MaxUpstreamUnknownConnections, "spec.settings.maxUpstreamUnknownConnections", 0)
		if err != nil {
			return err
		}
		out.MaxUpstreamUnknownConnections = wrapperspb.UInt32(n)
	}
	out.EnableHashtagging = s.EnableHashtagging
	out.EnableRedirection = s.EnableRedirection
	policy, ok := readPolicies[s.ReadPolicy]
	if !ok {
		return invalid("spec.settings.readPolicy %q is none of MASTER, PREFER_MASTER, REPLICA, PREFER_REPLICA, ANY", s.ReadPolicy)
	}
	out.ReadPolicy = policy
	cfg.caseInsensitive = s.CaseInsensitive
	return nil
}

// maxPrefixBytes is Envoy's limit on a route prefix.
const maxPrefixBytes = 1000

// applyRoutes turns spec.redis into prefix routes, in input order (Envoy matches the
// longest prefix whatever the order), and the catch-all. Two routes for the same
// prefix (the same ignoring ASCII case, when caseInsensitive: Envoy lowercases them)
// or two without a match conflict: Envoy would reject the filter.
func (cfg *proxyConfig) applyRoutes(d *destinations, routes []v1alpha1.RedisRoute) error {
	seen := map[string]int{}
	catchAll := -1
	for i := range routes {
		r := &routes[i]
		where := fmt.Sprintf("spec.redis[%d]", i)
		route, err := d.route(r, where)
		if err != nil {
			return err
		}
		if r.Match == nil {
			if catchAll >= 0 {
				return conflict("%s has no match, as spec.redis[%d]: there is one catch-all route", where, catchAll)
			}
			catchAll = i
			cfg.catchAll = route
			continue
		}
		prefix := r.Match.Key.Prefix
		switch {
		case prefix == "":
			return invalid("%s.match.key.prefix is empty: leave match out for a catch-all route", where)
		case len(prefix) > maxPrefixBytes:
			return invalid("%s.match.key.prefix is longer than %d bytes", where, maxPrefixBytes)
		}
		key := prefix
		if cfg.caseInsensitive {
			key = asciiLower(prefix)
		}
		if j, dup := seen[key]; dup {
			if cfg.caseInsensitive {
				return conflict("%s has the prefix %q of spec.redis[%d], ignoring case (caseInsensitive)", where, prefix, j)
			}
			return conflict("%s has the prefix %q of spec.redis[%d]", where, prefix, j)
		}
		seen[key] = i
		route.Prefix = prefix
		route.RemovePrefix = r.Match.Key.RemovePrefix
		cfg.routes = append(cfg.routes, route)
	}
	return nil
}

// asciiLower lowercases ASCII letters only, as Envoy does with case-insensitive prefixes.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// destinations resolves route and mirror destinations of a RedisService to Istio's
// outbound clusters.
type destinations struct {
	ctx       *envoyfilter.Context
	svc       *model.Service
	port      *model.Port
	namespace string // the RedisService's: completes short hosts
}

func (d *destinations) route(r *v1alpha1.RedisRoute, where string) (*redis.RedisProxy_PrefixRoutes_Route, error) {
	cluster, err := d.cluster(r.Route, where+".route")
	if err != nil {
		return nil, err
	}
	route := &redis.RedisProxy_PrefixRoutes_Route{Cluster: cluster}
	for j := range r.Mirror {
		m := &r.Mirror[j]
		at := fmt.Sprintf("%s.mirror[%d]", where, j)
		mc, err := d.cluster(m.Route, at+".route")
		if err != nil {
			return nil, err
		}
		policy := &redis.RedisProxy_PrefixRoutes_Route_RequestMirrorPolicy{Cluster: mc, ExcludeReadCommands: m.ExcludeReadCommands}
		if m.Percentage != nil { // unset: every command
			f, err := fraction(m.Percentage, at+".percentage")
			if err != nil {
				return nil, err
			}
			policy.RuntimeFraction = f
		}
		route.RequestMirrorPolicy = append(route.RequestMirrorPolicy, policy)
	}
	return route, nil
}

// cluster is Istio's outbound cluster of a destination: outbound|<port>||<host>, the
// host completed in the RedisService's namespace. The port is the destination's,
// else the current one when the host is the service's own, else the single tcp-redis
// port of the host's service.
func (d *destinations) cluster(dest v1alpha1.RouteDestination, where string) (string, error) {
	h := string(model.ResolveHost(dest.Host, d.namespace, d.ctx.DomainSuffix))
	if h == "" {
		return "", invalid("%s.host is empty", where)
	}
	if host.Name(h).IsWildCarded() {
		return "", invalid("%s.host %s is a wildcard: name one service", where, h)
	}
	target := d.ctx.Service(h)
	self := slices.Contains(d.svc.Hosts, h)
	if self {
		target = d.svc
	}
	if target == nil {
		return "", invalid("%s.host %s is not a known service", where, h)
	}
	var ports []uint32
	for _, p := range target.Ports {
		if p.Protocol == model.Redis {
			ports = append(ports, p.Number)
		}
	}
	var port uint32
	switch {
	case dest.Port < 0 || dest.Port > math.MaxUint16:
		return "", invalid("%s.port %d is not a port number", where, dest.Port)
	case dest.Port > 0:
		port = uint32(dest.Port)
		if !slices.Contains(ports, port) {
			return "", invalid("%s: port %d of %s is not a tcp-redis port (tcp-redis ports: %v)", where, port, h, ports)
		}
	case self:
		port = d.port.Number
	case len(ports) == 1:
		port = ports[0]
	case len(ports) == 0:
		return "", invalid("%s.host %s is not a Redis service: it has no tcp-redis port", where, h)
	default:
		return "", invalid("%s.host %s has several tcp-redis ports %v: set port", where, h, ports)
	}
	return model.OutboundClusterName(port, "", h), nil
}

// fraction turns a percentage (0 to 100, fractions allowed) into a runtime fraction
// in millionths, which keeps percentages such as 12.5 or 0.0001 exact.
func fraction(p *float64, where string) (*core.RuntimeFractionalPercent, error) {
	v := 100.0
	if p != nil {
		v = *p
	}
	if math.IsNaN(v) || v < 0 || v > 100 {
		return nil, invalid("%s %v is not between 0 and 100", where, v)
	}
	return &core.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
		Numerator:   uint32(math.Round(v * 10000)),
		Denominator: typev3.FractionalPercent_MILLION,
	}}, nil
}

var faultTypes = map[v1alpha1.FaultType]redis.RedisProxy_RedisFault_RedisFaultType{
	v1alpha1.FaultDelay: redis.RedisProxy_RedisFault_DELAY,
	v1alpha1.FaultError: redis.RedisProxy_RedisFault_ERROR,
}

func fault(f *v1alpha1.Fault, where string) (*redis.RedisProxy_RedisFault, error) {
	t, ok := faultTypes[f.Type]
	if !ok {
		return nil, invalid("%s.type %q is neither DELAY nor ERROR", where, f.Type)
	}
	enabled, err := fraction(f.Percentage, where+".percentage")
	if err != nil {
		return nil, err
	}
	out := &redis.RedisProxy_RedisFault{FaultType: t, FaultEnabled: enabled, Commands: slices.Clone(f.Commands)}
	switch {
	case f.Delay != nil:
		d, err := duration(f.Delay, where+".delay", true)
		if err != nil {
			return nil, err
		}
		out.Delay = d
	case t == redis.RedisProxy_RedisFault_DELAY:
		return nil, invalid("%s: a DELAY fault needs delay", where)
	}
	for i, c := range f.Commands {
		if strings.TrimSpace(c) == "" {
			return nil, invalid("%s.commands[%d] is empty", where, i)
		}
	}
	return out, nil
}

// duration converts a Kubernetes duration; zero is allowed only where zeroOK.
func duration(d *metav1.Duration, where string, zeroOK bool) (*durationpb.Duration, error) {
	switch {
	case d.Duration < 0:
		return nil, invalid("%s %v is negative", where, d.Duration)
	case d.Duration == 0 && !zeroOK:
		return nil, invalid("%s must be more than 0", where)
	}
	return durationpb.New(d.Duration), nil
}

func uint32Of(n int64, where string, lowest int64) (uint32, error) {
	if n < lowest || n > math.MaxUint32 {
		return 0, invalid("%s %d is not between %d and %d", where, n, lowest, uint64(math.MaxUint32))
	}
	return uint32(n), nil //nolint:gosec // range checked above
}

// Secret keys used when the reference names none.
const (
	DefaultPasswordKey = "password"
	DefaultUsernameKey = "username"
)

// resolveAuth reads credentials, from the object itself or from a Secret in its
// namespace. Errors name the Secret and key, never a value.
func resolveAuth(ctx *envoyfilter.Context, a *v1alpha1.Auth, namespace, where string) (*credentials, error) {
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
	data := secretData(ctx, namespace, ref.Name)
	if data == nil {
		return nil, &configError{reason: v1alpha1.ReasonSecretNotFound, msg: fmt.Sprintf("%s: Secret %s/%s not found", where, namespace, ref.Name)}
	}
	name := namespace + "/" + ref.Name
	passwordKey := ref.PasswordKey
	if passwordKey == "" {
		passwordKey = DefaultPasswordKey
	}
	password, ok := data[passwordKey]
	switch {
	case !ok:
		return nil, &configError{reason: v1alpha1.ReasonSecretKeyNotFound, msg: fmt.Sprintf("%s: Secret %s has no key %q for the password", where, name, passwordKey)}
	case len(password) == 0:
		return nil, invalid("%s: Secret %s key %q (the password) is empty", where, name, passwordKey)
	}
	c := &credentials{password: dataSource(password)}
	usernameKey, named := ref.UsernameKey, ref.UsernameKey != ""
	if !named {
		usernameKey = DefaultUsernameKey
	}
	username, ok := data[usernameKey]
	switch {
	case !ok && named:
		return nil, &configError{reason: v1alpha1.ReasonSecretKeyNotFound, msg: fmt.Sprintf("%s: Secret %s has no key %q for the username", where, name, usernameKey)}
	case len(username) == 0 && named:
		return nil, invalid("%s: Secret %s key %q (the username) is empty", where, name, usernameKey)
	case len(username) > 0:
		c.username = dataSource(username)
	}
	return c, nil
}

// secretData is the data of a Secret of the push, stringData merged in as the API
// server does; nil when there is no such Secret.
func secretData(ctx *envoyfilter.Context, namespace, name string) map[string][]byte {
	s := ctx.Secret(namespace, name)
	if s == nil {
		return nil
	}
	data := make(map[string][]byte, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		data[k] = v
	}
	for k, v := range s.StringData {
		data[k] = []byte(v)
	}
	return data
}

// dataSource holds a credential inline: as a string when it is UTF-8 text, as bytes
// otherwise (a proto string must be UTF-8; Redis passwords are binary-safe).
func dataSource(v []byte) *core.DataSource {
	if utf8.Valid(v) {
		return &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: string(v)}}
	}
	return &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: v}}
}

// destinationConfig is what a RedisDestination gives the clusters of one service port.
type destinationConfig struct {
	// hosts are the service's hosts the RedisDestination binds: their clusters are patched.
	hosts          []string
	connectTimeout *durationpb.Duration
	maxConnections *uint32
	keepalive      *core.TcpKeepalive
	auth           *credentials
	clusterMode    bool
	// seeds are the discovery endpoints of a CLUSTER mode proxy; nil for the default
	// (each host and the port).
	seeds []*core.SocketAddress
}

// resolveDestination turns the RedisDestination bound to a service (nil for none)
// into the settings of the clusters of one of its ports. The generator and Check
// both call it.
func resolveDestination(ctx *envoyfilter.Context, svc *model.Service, rd *v1alpha1.RedisDestination) (*destinationConfig, error) {
	if rd == nil {
		return nil, nil
	}
	cfg := &destinationConfig{hosts: boundHosts(ctx, svc, model.RedisConfig(rd))}
	if rd.Spec.TrafficPolicy == nil || rd.Spec.TrafficPolicy.ConnectionPool == nil {
		return cfg, nil
	}
	pool := rd.Spec.TrafficPolicy.ConnectionPool
	if tcp := pool.TCP; tcp != nil {
		if tcp.MaxConnections != nil {
			if *tcp.MaxConnections < 1 {
				return nil, invalid("spec.trafficPolicy.connectionPool.tcp.maxConnections %d is less than 1", *tcp.MaxConnections)
			}
			n := uint32(*tcp.MaxConnections)
			cfg.maxConnections = &n
		}
		if tcp.ConnectTimeout != nil {
			d, err := duration(tcp.ConnectTimeout, "spec.trafficPolicy.connectionPool.tcp.connectTimeout", false)
			if err != nil {
				return nil, err
			}
			cfg.connectTimeout = d
		}
		if ka := tcp.TCPKeepalive; ka != nil {
			k, err := keepalive(ka)
			if err != nil {
				return nil, err
			}
			cfg.keepalive = k
		}
	}
	r := pool.Redis
	if r == nil {
		return cfg, nil
	}
	auth, err := resolveAuth(ctx, r.Auth, rd.Namespace, "spec.trafficPolicy.connectionPool.redis.auth")
	if err != nil {
		return nil, err
	}
	cfg.auth = auth
	switch r.Mode {
	case "", v1alpha1.ModeProxy:
		if len(r.DiscoveryEndpoints) > 0 {
			return nil, invalid("spec.trafficPolicy.connectionPool.redis.discoveryEndpoints need mode CLUSTER")
		}
	case v1alpha1.ModeCluster:
		cfg.clusterMode = true
		for i, e := range r.DiscoveryEndpoints {
			a, err := seed(e)
			if err != nil {
				return nil, invalid("spec.trafficPolicy.connectionPool.redis.discoveryEndpoints[%d] %q: %v", i, e, err)
			}
			cfg.seeds = append(cfg.seeds, a)
		}
	default:
		return nil, invalid("spec.trafficPolicy.connectionPool.redis.mode %q is neither PROXY nor CLUSTER", r.Mode)
	}
	return cfg, nil
}

// keepalive turns on TCP keepalive; unset fields keep the OS defaults, as Istio's
// DestinationRule does. Envoy counts in whole seconds: durations round up, to at
// least 1.
func keepalive(ka *v1alpha1.TCPKeepalive) (*core.TcpKeepalive, error) {
	out := &core.TcpKeepalive{}
	const where = "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive"
	if ka.Probes != nil {
		if *ka.Probes < 1 {
			return nil, invalid("%s.probes %d is less than 1", where, *ka.Probes)
		}
		out.KeepaliveProbes = wrapperspb.UInt32(uint32(*ka.Probes))
	}
	for _, f := range []struct {
		d    *metav1.Duration
		name string
		dst  **wrapperspb.UInt32Value
	}{{ka.Time, "time", &out.KeepaliveTime}, {ka.Interval, "interval", &out.KeepaliveInterval}} {
		if f.d == nil {
			continue
		}
		if f.d.Duration < 0 {
			return nil, invalid("%s.%s %v is negative", where, f.name, f.d.Duration)
		}
		secs := f.d.Duration / time.Second
		if f.d.Duration%time.Second != 0 || secs == 0 { // round up, to at least 1
			secs++
		}
		if secs > math.MaxUint32 {
			return nil, invalid("%s.%s %v is too long", where, f.name, f.d.Duration)
		}
		*f.dst = wrapperspb.UInt32(uint32(secs))
	}
	return out, nil
}

// seed parses a discovery endpoint: host:port, the host an IP or a DNS name.
func seed(e string) (*core.SocketAddress, error) {
	h, p, err := net.SplitHostPort(e)
	if err != nil {
		return nil, errors.New("not host:port")
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	if net.ParseIP(h) == nil && !dnsName(h) {
		return nil, fmt.Errorf("host %q is neither an IP nor a DNS name", h)
	}
	return &core.SocketAddress{Address: h, PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(port)}}, nil
}

// dnsName reports whether h is a DNS name: dot-separated labels of letters, digits,
// '-' and '_', 1 to 63 bytes each, 253 in all.
func dnsName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
			if !letter && (c < '0' || c > '9') && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

// boundHosts are the hosts of svc that a Redis object binds, as the service's index
// binds them: equal, or matched by a wildcard host of the object.
func boundHosts(ctx *envoyfilter.Context, svc *model.Service, obj config.Config) []string {
	var out []string
	objHosts := model.HostsOf(obj, ctx.DomainSuffix)
	for _, h := range svc.Hosts {
		for _, oh := range objHosts {
			if oh == h || host.Name(oh).IsWildCarded() && host.Name(oh).Matches(host.Name(h)) {
				out = append(out, h)
				break
			}
		}
	}
	return out
}
