// Package protocols is the one table of connection protocols, the way
// Dex's ConnectorsConfig lists its connectors: each protocol's settings
// schema, registered with config when this package is imported, and its
// Open, for idp's connection cache. Adding a protocol is a line here;
// neither config nor idp names one.
package protocols

import (
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/oidc"
	"github.com/gatehouse/gatehouse/idp/password"
	"github.com/gatehouse/gatehouse/idp/saml"
)

var table = []struct {
	name   string
	schema config.Protocol
	open   connection.Factory
}{
	{password.Type, password.Schema{}, password.Open},
	{oidc.Type, oidc.Schema{}, oidc.Open},
	{saml.Type, saml.Schema{}, saml.Open},
}

func init() {
	for _, p := range table {
		config.RegisterProtocol(p.name, p.schema)
	}
}

// Factories opens each protocol's connections, by type.
func Factories() map[string]connection.Factory {
	m := make(map[string]connection.Factory, len(table))
	for _, p := range table {
		m[p.name] = p.open
	}
	return m
}
