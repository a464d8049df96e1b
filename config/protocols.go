package config

import (
	"slices"
	"strings"
	"sync"
)

// Protocol is a connection protocol's settings schema. Its package owns
// it (idp/oidc, idp/saml, idp/password); the command registers each with
// RegisterProtocol, in one table, so that config imports no protocol.
type Protocol interface {
	// NewSettings returns a pointer to a zero settings struct (yaml tags)
	// that the protocol's block (the key named after it, under
	// connection:) decodes into, strictly, like the rest of the file; nil
	// if the protocol has no block.
	NewSettings() any
	// Problems is everything wrong with decoded settings; a problem of one
	// key is a *connection.FieldError with the key relative to the block.
	Problems(settings any) []error
}

// Required is what a protocol with a block may say its block needs, for
// the message when the block is missing ("metadata_url or metadata_xml").
type Required interface{ Required() string }

var (
	protocolsMu sync.RWMutex
	protocols   = map[string]Protocol{}
	order       []string // registration order, for messages
)

// RegisterProtocol makes a connection type known to the config: type:
// name, with its block under the key name. A later registration of the
// same name replaces the earlier.
func RegisterProtocol(name string, p Protocol) {
	protocolsMu.Lock()
	defer protocolsMu.Unlock()
	if _, again := protocols[name]; !again {
		order = append(order, name)
	}
	protocols[name] = p
}

func protocol(name string) (Protocol, bool) {
	protocolsMu.RLock()
	defer protocolsMu.RUnlock()
	p, ok := protocols[name]
	return p, ok
}

// protocolList names the registered types in registration order, for
// messages: "password, oidc or saml".
func protocolList() string {
	protocolsMu.RLock()
	defer protocolsMu.RUnlock()
	switch n := len(order); n {
	case 0:
		// A program that loads configs imports idp/protocols.
		return "no connection protocols are registered: import github.com/gatehouse/gatehouse/idp/protocols"
	case 1:
		return order[0]
	default:
		return strings.Join(slices.Clone(order[:n-1]), ", ") + " or " + order[n-1]
	}
}

// LookupProtocol returns the registered protocol name (the admin API
// checks connection settings with the same schema as the file).
func LookupProtocol(name string) (Protocol, bool) { return protocol(name) }
