// Package orgtree is the one walk up the org tree (an org, its parent,
// its parent's parent): bounded, ended by a cycle as by a chain past the
// bound, with each way of ending named. The org directory (idp) and the
// policy layers (policy) walk it with their own lookups. It is a leaf.
package orgtree

import "errors"

// Why a walk found nothing.
var (
	// ErrNoParent: the walk reached an org without a parent.
	ErrNoParent = errors.New("no org up the parent chain")
	// ErrTooLong: the chain goes on past the bound, or loops (and would
	// go on forever).
	ErrTooLong = errors.New("parent chain too long or looping")
)

// MissingError is an org on the way that the lookup does not know.
type MissingError struct{ ID string }

func (e *MissingError) Error() string { return "org " + e.ID + " not found" }

// Nearest walks from id up through its parents and returns the first for
// which ok holds: id itself or one of at most steps ancestors, nearest
// first. parent looks an org up: its parent's ID ("" for none) and
// whether the org is known. A parent is looked up before the bound is
// checked, so a missing one is reported as missing even just past it.
// Without a match the error is ErrNoParent, a *MissingError or
// ErrTooLong.
func Nearest(id string, steps int, parent func(id string) (parentID string, known bool), ok func(id string) bool) (string, error) {
	if _, known := parent(id); !known {
		return "", &MissingError{ID: id}
	}
	seen := []string{id}
	for {
		if ok(id) {
			return id, nil
		}
		p, _ := parent(id)
		if p == "" {
			return "", ErrNoParent
		}
		if _, known := parent(p); !known {
			return "", &MissingError{ID: p}
		}
		if len(seen) > steps {
			return "", ErrTooLong
		}
		for _, s := range seen {
			if s == p {
				return "", ErrTooLong
			}
		}
		seen = append(seen, p)
		id = p
	}
}
