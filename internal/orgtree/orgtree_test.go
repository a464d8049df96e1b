package orgtree

import (
	"errors"
	"testing"
)

func TestNearest(t *testing.T) {
	// c → b → a; x → y → x (a loop); m → gone (missing).
	parents := map[string]string{"a": "", "b": "a", "c": "b", "x": "y", "y": "x", "m": "gone"}
	parent := func(id string) (string, bool) { p, ok := parents[id]; return p, ok }
	is := func(want string) func(string) bool { return func(id string) bool { return id == want } }
	tests := []struct {
		start   string
		steps   int
		ok      func(string) bool
		want    string
		err     error
		missing string
	}{
		{start: "c", steps: 5, ok: is("c"), want: "c"},
		{start: "c", steps: 5, ok: is("a"), want: "a"},
		{start: "c", steps: 2, ok: is("a"), want: "a"},
		{start: "c", steps: 1, ok: is("a"), err: ErrTooLong},
		{start: "c", steps: 5, ok: is("z"), err: ErrNoParent},
		{start: "x", steps: 5, ok: is("z"), err: ErrTooLong},
		{start: "m", steps: 5, ok: is("z"), missing: "gone"},
		{start: "nobody", steps: 5, ok: is("nobody"), missing: "nobody"},
	}
	for _, tt := range tests {
		got, err := Nearest(tt.start, tt.steps, parent, tt.ok)
		var m *MissingError
		switch {
		case tt.missing != "":
			if !errors.As(err, &m) || m.ID != tt.missing {
				t.Errorf("Nearest(%s, %d) = %q, %v; want %s missing", tt.start, tt.steps, got, err, tt.missing)
			}
		case tt.err != nil:
			if !errors.Is(err, tt.err) {
				t.Errorf("Nearest(%s, %d) = %q, %v; want %v", tt.start, tt.steps, got, err, tt.err)
			}
		case err != nil || got != tt.want:
			t.Errorf("Nearest(%s, %d) = %q, %v; want %q", tt.start, tt.steps, got, err, tt.want)
		}
	}
}
