// Package idp runs sign-in on the reserved /.gatehouse/ paths: home-realm
// discovery, each org's connection (oidc, saml or password, opened by
// the subpackages), just-in-time provisioning, the cross-host session
// hand-off, org switching and logout, single logout included.
//
// The flow: the proxy sends a browser without a session to LoginURL. The
// login page finds the org (login host, ?org= or the email's domain); a
// password org signs in on the page, a federated one is sent to its IdP
// (beginRedirect) and comes back to the OIDC callback or the SAML ACS
// (finishFlow), where the identity is provisioned onto a user and a
// membership. A person whose org requires a second factor, or who has
// one, answers the second step first (secondFactor): until then there is
// only a pending record. startSession then creates the session, and
// complete hands it to the host the person came from with a single-use
// ticket.
//
// Files:
//
//	handler.go        Options, Handler, New: the routes
//	login.go          the pages: login page, discovery, password sign-in
//	flow.go           the redirect sign-in: begin, callback and ACS, finishFlow, startSession
//	mfa.go            the second step: pending sign-ins, TOTP, recovery and email codes, enrollment, step-up
//	passkey.go        WebAuthn: the relying party of a host, ceremonies, sealed stateless challenges
//	account.go        passwordless sign-in with a passkey; the account page (the person's own factors)
//	factors.go        which factors an org counts, remembered browsers, sessions per person
//	provision.go      just-in-time users and memberships, role and attribute mapping
//	invite.go         invitation links: the page, accepting with a password or through the IdP
//	unsolicited.go    IdP-initiated SAML sign-ins, held until the browser comes back
//	samlendpoints.go  which org a SAML address serves, wrong addresses, SP metadata (also before an org uses SAML)
//	ssotest.go        an admin's test sign-in through a draft connection: a trace (the login tracer), never a session
//	logout.go         the logout page, single logout started here or by the IdP
//	handoff.go        the cross-host hand-off: browser state, tickets, complete, handoff
//	orgs.go           the orgs page: list and switch the person's orgs
//	redirect.go       post-login targets (rd): ValidateRedirect, EmailDomain, their checks on requests
//	throttle.go       failure and flow-start budgets, per key and per address
//	sharedthrottle.go the same budgets counted in the store, for several nodes (PostgreSQL)
//	known.go          known devices and addresses, with budgets of their own
//	connections.go    opening and caching each org's connection; ownerOf, the org whose connection signs in
//	directory.go      the org snapshot by host, domain, slug and ID; Nearest, the one walk up the org tree
//	notifications.go  an org's messages, templates inherited from its ancestors
//	helpers.go        what every file uses: audit, error references and pages, branding, CSRF
package idp
