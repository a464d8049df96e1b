package config

import (
	"fmt"
	"strings"
)

// expandEnv substitutes environment variables in one scalar value:
//
//	${NAME}          the variable's value; a problem when it is unset
//	${NAME:-default} default when NAME is unset or empty
//	$${              a literal "${"
//
// Any other "$" is kept as is, so argon2 PHC strings need no escaping.
// A nil getenv means the value must not read the environment (texts shown
// on public pages, message templates): every reference is a problem, and
// "$${" still means "${".
// Substitution is a single pass over a value that has already been parsed,
// so a variable's value is never itself expanded or read as YAML.
// It returns a message for every bad or unset reference.
func expandEnv(s string, getenv func(string) (string, bool)) (string, []string) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	var problems []string
	for i := 0; i < len(s); {
		rest := s[i:]
		switch {
		case strings.HasPrefix(rest, "$${"):
			b.WriteString("${")
			i += 3
			continue
		case !strings.HasPrefix(rest, "${"):
			b.WriteByte(s[i])
			i++
			continue
		}
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			problems = append(problems, `unterminated "${" (write "$${" for a literal "${")`)
			b.WriteString(rest)
			break
		}
		expr := rest[2:end]
		i += end + 1
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			problems = append(problems, fmt.Sprintf(
				`invalid environment variable reference %q (use ${NAME} or ${NAME:-default}; "$${" is a literal "${")`,
				"${"+expr+"}"))
			continue
		}
		if getenv == nil {
			problems = append(problems, fmt.Sprintf("environment variable reference %q is not expanded here", "${"+expr+"}"))
			continue
		}
		val, ok := getenv(name)
		switch {
		case hasDef && (!ok || val == ""):
			val = def
		case !ok:
			problems = append(problems, fmt.Sprintf("environment variable %s is not set", name))
			continue
		}
		b.WriteString(val)
	}
	return b.String(), problems
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
