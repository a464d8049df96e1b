// Package idp runs sign-in: home-realm discovery, the org's connection
// (the password pool today), the cross-host session hand-off and logout.
package idp
