package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// platformAdminsKey is the blob holding the platform admins the file
// declared last time, so that an address removed from the file loses the
// right.
const platformAdminsKey = "config/platform-admins"

// PlatformAdmins marks the users with the given emails as platform admins
// (creating a user record for an address not seen yet, so the right is in
// place at their first sign-in) and unmarks those the file declared
// before and no longer does.
func PlatformAdmins(ctx context.Context, st store.Store, emails []string, now time.Time) error {
	want := make([]string, 0, len(emails))
	for _, e := range emails {
		want = append(want, strings.ToLower(e))
	}
	var before []string
	switch b, err := st.GetBlob(ctx, platformAdminsKey); {
	case err == nil:
		if err := json.Unmarshal(b.Value, &before); err != nil {
			return fmt.Errorf("apply: platform admins: stored list: %w", err)
		}
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("apply: platform admins: %w", err)
	}
	set := func(email string, on bool) error {
		u, err := st.GetUserByEmail(ctx, email)
		switch {
		case errors.Is(err, store.ErrNotFound) && on:
			return st.CreateUser(ctx, store.User{ID: "usr_" + newID(), Email: email, PlatformAdmin: true, CreatedAt: now, UpdatedAt: now})
		case errors.Is(err, store.ErrNotFound):
			return nil
		case err != nil:
			return err
		case u.PlatformAdmin == on:
			return nil
		}
		_, err = st.UpdateUser(ctx, u.ID, func(u store.User) (store.User, error) {
			u.PlatformAdmin, u.UpdatedAt = on, now
			return u, nil
		})
		return err
	}
	for _, e := range before {
		if !slices.Contains(want, e) {
			if err := set(e, false); err != nil {
				return fmt.Errorf("apply: platform admin %s: %w", e, err)
			}
		}
	}
	for _, e := range want {
		if err := set(e, true); err != nil {
			return fmt.Errorf("apply: platform admin %s: %w", e, err)
		}
	}
	b, _ := json.Marshal(want)
	if err := st.PutBlob(ctx, platformAdminsKey, b); err != nil {
		return fmt.Errorf("apply: platform admins: %w", err)
	}
	return nil
}
