package connection

import "testing"

// Only this machine may be reached over plain HTTP: a name that merely
// starts like a loopback address is a public host.
func TestLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "127.0.0.1": true, "127.8.9.10": true, "::1": true,
		"127.attacker.example": false, "127.0.0.1.nip.io": false, "localhost.evil": false,
		"10.0.0.1": false, "0.0.0.0": false, "": false, "::ffff:127.0.0.1": true, "example.com": false,
	} {
		if got := Loopback(host); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", host, got, want)
		}
	}
}
