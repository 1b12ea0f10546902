package model

import "unicode/utf8"

// Shorten cuts s to at most limit bytes, ending in "..." when cut, without splitting
// a character: for what users write that comes back in messages, and for messages
// the apiserver takes only up to a size.
func Shorten(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	dots := "..."
	if limit < len(dots) {
		dots = ""
	}
	s = s[:limit-len(dots)]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + dots
}

// Limits the apiserver puts on what users read.
const (
	// MaxEventNote is the longest note of an events.k8s.io/v1 Event.
	MaxEventNote = 1024
	// MaxConditionMessage is the longest message of a metav1.Condition.
	MaxConditionMessage = 32768
)
