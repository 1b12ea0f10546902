package bootstrap

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
)

// pollSecrets triggers a push every period while a Redis object names a Secret: the
// push reads those Secrets again and regenerates the services whose Secrets changed
// (the translation compares their versions), so no Secret is watched.
func pollSecrets(ctx context.Context, cache client.Reader, period time.Duration, trigger func(), log logr.Logger) {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		names, err := namesSecrets(ctx, cache)
		if err != nil {
			log.V(1).Info("listing Redis objects for their Secrets", "error", err.Error())
			return
		}
		if names {
			trigger()
		}
	}, period)
}

// namesSecrets reports whether a RedisService or RedisDestination takes its auth
// from a Secret.
func namesSecrets(ctx context.Context, cache client.Reader) (bool, error) {
	var rss redisv1alpha1.RedisServiceList
	if err := cache.List(ctx, &rss); err != nil {
		return false, err
	}
	for _, rs := range rss.Items {
		if s := rs.Spec.Settings; s != nil && s.Auth != nil && s.Auth.Secret != nil {
			return true, nil
		}
	}
	var rds redisv1alpha1.RedisDestinationList
	if err := cache.List(ctx, &rds); err != nil {
		return false, err
	}
	for _, rd := range rds.Items {
		if tp := rd.Spec.TrafficPolicy; tp != nil && tp.ConnectionPool != nil && tp.ConnectionPool.Redis != nil &&
			tp.ConnectionPool.Redis.Auth != nil && tp.ConnectionPool.Redis.Auth.Secret != nil {
			return true, nil
		}
	}
	return false, nil
}
