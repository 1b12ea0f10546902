package redis

import (
	"math"

	"google.golang.org/protobuf/types/known/durationpb"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
)

// duration converts a duration of the API; zero is allowed only where zeroOK.
func duration(d *redisspec.Duration, where string, zeroOK bool) (*durationpb.Duration, error) {
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
