package store

import (
	"errors"
	"fmt"
)

// The fields an Update may not change, checked alike by every backend.

// CheckAPITokenUpdate: a token keeps its ID, org and maker.
func CheckAPITokenUpdate(old, next APIToken) error {
	switch {
	case next.ID != old.ID:
		return fmt.Errorf("id changed to %q", next.ID)
	case next.OrgID != old.OrgID:
		return fmt.Errorf("org changed to %q", next.OrgID)
	case next.CreatedBy != old.CreatedBy:
		return fmt.Errorf("creator changed to %q", next.CreatedBy)
	}
	return nil
}

// CheckInvitationUpdate: an invitation keeps its ID, org, email and
// maker, and has a hash.
func CheckInvitationUpdate(old, next Invitation) error {
	switch {
	case next.ID != old.ID:
		return fmt.Errorf("id changed to %q", next.ID)
	case next.OrgID != old.OrgID:
		return fmt.Errorf("org changed to %q", next.OrgID)
	case next.Email != old.Email:
		return fmt.Errorf("email changed to %q", next.Email)
	case next.CreatedBy != old.CreatedBy:
		return fmt.Errorf("creator changed to %q", next.CreatedBy)
	case next.Hash == "":
		return errors.New("hash is required")
	}
	return nil
}

// CheckOIDCClientUpdate: an app keeps its ID and org.
func CheckOIDCClientUpdate(old, next OIDCClient) error {
	switch {
	case next.ID != old.ID:
		return fmt.Errorf("id changed to %q", next.ID)
	case next.OrgID != old.OrgID:
		return fmt.Errorf("org changed to %q", next.OrgID)
	}
	return nil
}

// CheckRefreshFamilyUpdate: a family keeps its ID, client, person, org,
// session and expiry.
func CheckRefreshFamilyUpdate(old, next RefreshFamily) error {
	switch {
	case next.ID != old.ID, next.ClientID != old.ClientID, next.UserID != old.UserID, next.OrgID != old.OrgID,
		next.SessionID != old.SessionID, !next.ExpiresAt.Equal(old.ExpiresAt):
		return errors.New("its id, client, person, org, session and expiry are fixed")
	}
	return nil
}
