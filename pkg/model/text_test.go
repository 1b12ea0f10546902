package model

import "testing"

func TestShorten(t *testing.T) {
	for _, c := range []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"0123456789ab", 10, "0123456..."},
		{"ééééé", 8, "éé..."}, // never half a rune
		{"abcdef", 2, "ab"},
	} {
		if got := Shorten(c.in, c.limit); got != c.want {
			t.Errorf("Shorten(%q, %d) = %q, want %q", c.in, c.limit, got, c.want)
		}
	}
}
