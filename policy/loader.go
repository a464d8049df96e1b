package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Loader compiles policy sources when they change and swaps the result
// into an engine. A set that does not compile never replaces a working
// one, and its failure is logged once, not at every attempt; an org whose
// policy does not compile keeps its last good version (CompileIsolated).
// It is not safe for concurrent use: one reload loop owns it.
type Loader struct {
	engine  *Rego
	log     *slog.Logger
	lastKey string
	// badKey and badErr remember the last failure, so a broken file is
	// reported once, not at every interval.
	badKey, badErr string
	// files is the fingerprint of the policy files at the last check.
	files string
}

// NewLoader loads into engine.
func NewLoader(engine *Rego, log *slog.Logger) *Loader {
	return &Loader{engine: engine, log: log}
}

// Settled reports whether the policy files (or directories) at paths look
// the same as at the previous call: a file caught mid-write is not
// compiled. first (at start, when nothing is being edited under a running
// Gatehouse) is always settled.
func (l *Loader) Settled(paths []string, first bool) bool {
	var b strings.Builder
	for _, path := range paths {
		if path == "" {
			continue
		}
		fp, err := Fingerprint(path)
		if err != nil {
			fp = "error:" + err.Error()
		}
		b.WriteString(fp)
		b.WriteByte('|')
	}
	prev := l.files
	l.files = b.String()
	return first || prev == l.files
}

// Apply compiles src and swaps it in, unless it is the set in force or
// the one that failed last. It returns whether a new set is in force and
// the orgs whose policies did not compile. An error is returned only with
// first (Gatehouse does not start without its policies); later, a failure
// (of reading or compiling, err) is logged once and the last good set
// stays.
func (l *Loader) Apply(ctx context.Context, src Sources, srcErr error, first bool) (applied bool, broken map[string]error, err error) {
	if srcErr != nil {
		return false, nil, l.fail(first, "", srcErr)
	}
	key := src.Key()
	if key == l.lastKey || key == l.badKey {
		return false, nil, nil
	}
	set, broken, err := CompileIsolated(ctx, src, l.engine.Current())
	if err != nil {
		return false, nil, l.fail(first, key, err)
	}
	l.badKey, l.badErr = "", ""
	for orgID, err := range broken {
		// One org's policy does not hold back the others; that org keeps
		// its last good policy, or is denied if it never had one.
		l.log.Error("policy: org policy not loaded; its last good version stays in force (or, with none, the org is denied)",
			"org", orgID, "err", err)
	}
	l.engine.Swap(set)
	l.lastKey = key
	l.log.Info("policy: loaded", "version", set.Version, "platform", len(src.Platform) > 0, "routes", len(src.Routes), "orgs", len(src.Orgs))
	return true, broken, nil
}

func (l *Loader) fail(first bool, key string, err error) error {
	if first {
		return err
	}
	if err.Error() == l.badErr {
		return nil
	}
	l.badKey, l.badErr = key, err.Error()
	version := ""
	if s := l.engine.Current(); s != nil {
		version = s.Version
	}
	l.log.Error("policy: new policies not loaded; the last good set stays in force", "version", version, "err", err)
	return nil
}

// Key is a digest of everything in the sources: equal sources, equal keys
// (maps are walked in order), so an unchanged set is never recompiled.
func (src Sources) Key() string {
	h := sha256.New()
	// Canonical forms only: a key that changed on every call would
	// recompile and swap the set at every interval.
	dj, _ := json.Marshal(src.Data)
	h.Write(dj)
	write := func(layer string, mods []Module) {
		for _, m := range mods {
			fmt.Fprintf(h, "%s\x00%s\x00%s\x00", layer, m.Name, m.Text)
		}
	}
	write("platform", src.Platform)
	for _, m := range []map[string][]Module{src.Routes, src.Orgs} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			write(k, m[k])
		}
	}
	parents := make([]string, 0, len(src.OrgParent))
	for k, v := range src.OrgParent {
		parents = append(parents, k+">"+v)
	}
	slices.Sort(parents)
	fmt.Fprintf(h, "%v", parents)
	return hex.EncodeToString(h.Sum(nil))
}
