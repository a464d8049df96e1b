package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Record is one stored record in a form both backends read and write,
// for moving a deployment from one store to another (gatehouse store
// copy). Kind is one of RecordKinds; Key is the record's identity in its
// kind (an ID; "user\x00org" for a membership; "org\x00seq" for an audit
// event; "kind\x00id" for a single-use value; a blob's key; a secret's
// name); Value is the record as JSON, or the raw bytes of a single-use
// value, a blob or a secret.
type Record struct {
	Kind     string
	Key      string
	Value    []byte
	Expires  time.Time // single-use values
	Modified time.Time // blobs
}

// RecordKinds are the kinds in the order an import needs them (what a
// record refers to comes first).
var RecordKinds = []string{"org", "user", "membership", "session", "signing_key", "api_token",
	"invitation", "oidc_client", "refresh_family", "audit", "once", "blob", "secret"}

// Exporter stores list every record, in RecordKinds order.
type Exporter interface {
	Export(ctx context.Context, fn func(Record) error) error
}

// Importer stores take records an Exporter gave, into an empty store:
// indexes are built as for new records, audit events keep their chain
// (sequence numbers, hashes) unchanged.
type Importer interface {
	Import(ctx context.Context, r Record) error
}

// Backend is a store that can be copied from and to.
type Backend interface {
	Store
	Exporter
	Importer
}

// Copy moves every record of from into to, which must be empty, then
// checks the copy (CompareStores). It returns the records copied.
func Copy(ctx context.Context, from, to Backend) (int, error) {
	errNotEmpty := errors.New("not empty")
	if err := to.Export(ctx, func(r Record) error { return errNotEmpty }); errors.Is(err, errNotEmpty) {
		return 0, errors.New("store copy: the target store is not empty: copy only into a new one")
	} else if err != nil {
		return 0, fmt.Errorf("store copy: read the target: %w", err)
	}
	n := 0
	err := from.Export(ctx, func(r Record) error {
		if err := to.Import(ctx, r); err != nil {
			return fmt.Errorf("store copy: %s %q: %w", r.Kind, strings.ReplaceAll(r.Key, "\x00", " "), err)
		}
		n++
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, CompareStores(ctx, from, to)
}

// CompareStores checks that b holds exactly a's records (times as
// PostgreSQL keeps them, to the microsecond), that every index of b finds
// them (orgs by slug, people by email, memberships by org, sessions by
// person, invitations by hash), and that every audit chain of b verifies.
func CompareStores(ctx context.Context, a, b Backend) error {
	ra, err := exportAll(ctx, a)
	if err != nil {
		return err
	}
	rb, err := exportAll(ctx, b)
	if err != nil {
		return err
	}
	if len(ra) != len(rb) {
		return fmt.Errorf("store compare: %d records, then %d", len(ra), len(rb))
	}
	for i := range ra {
		x, y := ra[i], rb[i]
		if x.Kind != y.Kind || x.Key != y.Key || !sameValue(x, y) || !x.Expires.Truncate(time.Microsecond).Equal(y.Expires.Truncate(time.Microsecond)) ||
			!x.Modified.Truncate(time.Microsecond).Equal(y.Modified.Truncate(time.Microsecond)) {
			return fmt.Errorf("store compare: %s %q differs", x.Kind, strings.ReplaceAll(x.Key, "\x00", " "))
		}
	}
	return checkIndexes(ctx, b, rb)
}

// sameValue: the same bytes, or for JSON records the same fields.
func sameValue(x, y Record) bool {
	if bytes.Equal(x.Value, y.Value) {
		return true
	}
	if x.Kind == "once" || x.Kind == "blob" || x.Kind == "secret" {
		return false
	}
	var vx, vy any
	return json.Unmarshal(x.Value, &vx) == nil && json.Unmarshal(y.Value, &vy) == nil && fmt.Sprint(vx) == fmt.Sprint(vy)
}

func exportAll(ctx context.Context, s Exporter) ([]Record, error) {
	var out []Record
	err := s.Export(ctx, func(r Record) error { out = append(out, r); return nil })
	slices.SortFunc(out, func(x, y Record) int {
		if c := slices.Index(RecordKinds, x.Kind) - slices.Index(RecordKinds, y.Kind); c != 0 {
			return c
		}
		return strings.Compare(x.Key, y.Key)
	})
	return out, err
}

func checkIndexes(ctx context.Context, s Store, recs []Record) error {
	fail := func(format string, a ...any) error { return fmt.Errorf("store compare: index: "+format, a...) }
	for _, r := range recs {
		switch r.Kind {
		case "org":
			var o Org
			if err := json.Unmarshal(r.Value, &o); err != nil {
				return err
			}
			if got, err := s.GetOrgBySlug(ctx, o.Slug); err != nil || got.ID != o.ID {
				return fail("org slug %s: %v", o.Slug, err)
			}
		case "user":
			var u User
			if err := json.Unmarshal(r.Value, &u); err != nil {
				return err
			}
			if got, err := s.GetUserByEmail(ctx, u.Email); err != nil || got.ID != u.ID {
				return fail("user email %s: %v", u.Email, err)
			}
		case "membership":
			var m Membership
			if err := json.Unmarshal(r.Value, &m); err != nil {
				return err
			}
			ms, err := s.ListMembershipsByOrg(ctx, m.OrgID)
			if err != nil || !slices.ContainsFunc(ms, func(x Membership) bool { return x.UserID == m.UserID }) {
				return fail("membership %s in org %s: %v", m.UserID, m.OrgID, err)
			}
		case "session":
			var ss Session
			if err := json.Unmarshal(r.Value, &ss); err != nil {
				return err
			}
			list, err := s.ListSessionsByUser(ctx, ss.UserID)
			if err != nil || !slices.ContainsFunc(list, func(x Session) bool { return x.ID == ss.ID }) {
				return fail("session %s of %s: %v", ss.ID, ss.UserID, err)
			}
		case "invitation":
			var inv Invitation
			if err := json.Unmarshal(r.Value, &inv); err != nil {
				return err
			}
			if got, err := s.GetInvitationByHash(ctx, inv.Hash); err != nil || got.ID != inv.ID {
				return fail("invitation %s by hash: %v", inv.ID, err)
			}
		}
	}
	heads, err := s.AuditHeads(ctx)
	if err != nil {
		return err
	}
	for _, h := range heads {
		if _, err := VerifyAudit(ctx, s, h); err != nil {
			return fail("audit chain of %q: %v", h.OrgID, err)
		}
	}
	return nil
}

// ImportRecord adds one exported record to s through its Create methods
// (which build the indexes), PutOnce and Secret; raw writes the kinds a
// backend stores as they are: audit events (their chain kept) and blobs
// (their time kept).
func ImportRecord(ctx context.Context, s Store, r Record, raw func(Record) error) error {
	create := func(v any, fn func() error) error {
		if err := json.Unmarshal(r.Value, v); err != nil {
			return err
		}
		return fn()
	}
	switch r.Kind {
	case "org":
		var v Org
		return create(&v, func() error { return s.CreateOrg(ctx, v) })
	case "user":
		var v User
		return create(&v, func() error { return s.CreateUser(ctx, v) })
	case "membership":
		var v Membership
		return create(&v, func() error { return s.CreateMembership(ctx, v) })
	case "session":
		var v Session
		return create(&v, func() error { return s.CreateSession(ctx, v) })
	case "signing_key":
		var v SigningKey
		return create(&v, func() error { return s.CreateSigningKey(ctx, v) })
	case "api_token":
		var v APIToken
		return create(&v, func() error { return s.CreateAPIToken(ctx, v) })
	case "invitation":
		var v Invitation
		return create(&v, func() error { return s.CreateInvitation(ctx, v) })
	case "oidc_client":
		var v OIDCClient
		return create(&v, func() error { return s.CreateOIDCClient(ctx, v) })
	case "refresh_family":
		var v RefreshFamily
		return create(&v, func() error { return s.CreateRefreshFamily(ctx, v) })
	case "once":
		kind, id, _ := strings.Cut(r.Key, "\x00")
		return s.PutOnce(ctx, kind, id, r.Value, r.Expires)
	case "secret":
		got, err := s.Secret(ctx, r.Key, r.Value)
		if err == nil && !bytes.Equal(got, r.Value) {
			err = errors.New("a different secret of this name exists")
		}
		return err
	case "audit", "blob":
		if r.Kind == "blob" && !ValidBlobKey(r.Key) {
			return fmt.Errorf("invalid blob key %q", r.Key)
		}
		return raw(r)
	}
	return fmt.Errorf("unknown record kind %q", r.Kind)
}
