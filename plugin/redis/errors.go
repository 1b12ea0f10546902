package redis

import (
	"errors"
	"fmt"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
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
	return &configError{reason: redisspec.ReasonInvalid, msg: fmt.Sprintf(format, args...)}
}

// unreadable is the error of an object whose stored spec could not be read.
func unreadable(why string) error {
	return &configError{reason: redisspec.ReasonUnreadable, msg: redisspec.UnreadableMessage(why)}
}

// istiodTooOld is the error of a setting the connected istiod cannot apply.
func istiodTooOld(format string, args ...any) error {
	return &configError{reason: redisspec.ReasonIstiodTooOld, msg: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &configError{reason: redisspec.ReasonConflict, msg: fmt.Sprintf(format, args...)}
}

// reasonOf is the Ready reason for an error of the resolution: Invalid unless the
// error says otherwise.
func reasonOf(err error) string {
	var ce *configError
	if errors.As(err, &ce) {
		return ce.reason
	}
	return redisspec.ReasonInvalid
}

// objectError names the object a resolution error comes from, keeping its Reason,
// so that the translation reports it on that object.
func objectError(kind, namespace, name string, err error) error {
	return &generator.ObjectError{Ref: model.ObjectRef{Kind: kind, Namespace: namespace, Name: name}, Reason: reasonOf(err), Err: err}
}
