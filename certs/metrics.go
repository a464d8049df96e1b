package certs

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/mholt/acmez/v3/acme"
)

// Metric helpers: every one is a no-op without ACMEOptions.Metrics.

func (a *ACME) setExpiry(name string, notAfter time.Time) {
	if m := a.o.Metrics; m != nil {
		m.CertExpiry.WithLabelValues(name).Set(float64(notAfter.Unix()))
	}
}

// dropExpiry: a name no longer served (or stored) is not renewed, so its
// expiry must not page anyone.
func (a *ACME) dropExpiry(name string) {
	if m := a.o.Metrics; m != nil {
		m.CertExpiry.DeleteLabelValues(name)
	}
}

func (a *ACME) countIssuance(renewal bool, result string) {
	if m := a.o.Metrics; m != nil {
		kind := "new"
		if renewal {
			kind = "renewal"
		}
		m.CertIssuances.WithLabelValues(kind, result).Inc()
	}
}

func (a *ACME) countError(err any) {
	if m := a.o.Metrics; m != nil {
		m.ACMEErrors.WithLabelValues(errorKind(err)).Inc()
	}
}

// acmeProblems are the RFC 8555 problem types counted by name; a CA's
// other types count as "problem", so a CA cannot grow the label's values.
var acmeProblems = map[string]bool{}

func init() {
	for _, t := range []string{
		acme.ProblemTypeAccountDoesNotExist, acme.ProblemTypeAlreadyReplaced, acme.ProblemTypeAlreadyRevoked,
		acme.ProblemTypeBadCSR, acme.ProblemTypeBadNonce, acme.ProblemTypeBadPublicKey, acme.ProblemTypeBadRevocationReason,
		acme.ProblemTypeBadSignatureAlgorithm, acme.ProblemTypeCAA, acme.ProblemTypeCompound, acme.ProblemTypeConnection,
		acme.ProblemTypeDNS, acme.ProblemTypeExternalAccountRequired, acme.ProblemTypeIncorrectResponse,
		acme.ProblemTypeInvalidContact, acme.ProblemTypeMalformed, acme.ProblemTypeOrderNotReady, acme.ProblemTypeRateLimited,
		acme.ProblemTypeRejectedIdentifier, acme.ProblemTypeServerInternal, acme.ProblemTypeTLS, acme.ProblemTypeUnauthorized,
		acme.ProblemTypeUnsupportedContact, acme.ProblemTypeUnsupportedIdentifier, acme.ProblemTypeUserActionRequired,
	} {
		acmeProblems[strings.TrimPrefix(t, acme.ProblemTypeNamespace)] = true
	}
}

// errorKind classifies a failed order's error for gatehouse_acme_errors_total:
// the ACME problem type (a compound problem's first subproblem's), else
// timeout, network or other.
func errorKind(v any) string {
	err, ok := v.(error)
	if !ok {
		return "other"
	}
	var p acme.Problem
	if errors.As(err, &p) {
		t := p.Type
		if t == acme.ProblemTypeCompound && len(p.Subproblems) > 0 {
			t = p.Subproblems[0].Type
		}
		if k, ok := strings.CutPrefix(t, acme.ProblemTypeNamespace); ok && acmeProblems[k] {
			return k
		}
		return "problem"
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &ne):
		if ne.Timeout() {
			return "timeout"
		}
		return "network"
	}
	return "other"
}
