package config

import (
	"github.com/gatehouse/gatehouse/idp/oidc"
	"github.com/gatehouse/gatehouse/idp/password"
	"github.com/gatehouse/gatehouse/idp/saml"
)

// The command registers the protocols (idp/protocols, which imports this
// package and so cannot be imported by its tests): the same table here.
func init() {
	RegisterProtocol(password.Type, password.Schema{})
	RegisterProtocol(oidc.Type, oidc.Schema{})
	RegisterProtocol(saml.Type, saml.Schema{})
}
