// Package admincli implements `gatehouse admin`: the admin API of a
// running deployment (/api/v1) from the command line, with an API token.
//
// Output is a table for people (--output table) or the API's own JSON for
// scripts (--output json): a single object pretty-printed as the API sent
// it; a list as the API returns it ({"items": [...], "next_cursor": ...});
// with --all, which follows next_cursor to the end, one item per line
// (JSON Lines), so that it streams and `jq -c` or a line reader takes it
// as it comes. Deletions and revocations print nothing with --output json.
//
// Exit status: 0 done, 1 the API refused or could not be reached, 2 the
// command line is wrong.
package admincli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Usage is the usage text of the `gatehouse admin` verbs, in the style of
// the main usage.
func Usage() string {
	var b strings.Builder
	b.WriteString(`  gatehouse admin [--url URL] [--token T] [--output table|json] [--cacert FILE] [--timeout 30s]
                  VERB ...
                                    call a running deployment's admin API; --url is its
                                    public URL (default $GATEHOUSE_URL; https://, or http://
                                    to loopback only), --token an API token (default
                                    $GATEHOUSE_TOKEN, which keeps it out of the process list)
`)
	for _, v := range verbs {
		line := "    " + v.name
		if v.args != "" {
			line += " " + v.args
		}
		b.WriteString(line + "\n")
	}
	b.WriteString(`                                    --output json prints the API's JSON; lists with --all print
                                    one item per line. --limit is the page size (1-500).
`)
	return b.String()
}

// globals are the flags every verb takes, before it or among its own.
type globals struct {
	url, token, output, cacert string
	timeout                    time.Duration
}

var globalNames = map[string]bool{"url": true, "token": true, "output": true, "cacert": true, "timeout": true}

// register binds the globals to fs, their current values as defaults, so
// that a verb's flag set overrides what was given before the verb.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.url, "url", g.url, "the deployment's public URL, such as https://auth.example.com (default $GATEHOUSE_URL)")
	fs.StringVar(&g.token, "token", g.token, "API token, sent as Authorization: Bearer (default $GATEHOUSE_TOKEN)")
	fs.StringVar(&g.output, "output", g.output, "table or json")
	fs.StringVar(&g.cacert, "cacert", g.cacert, "PEM file of the CA to trust instead of the system's (private or dev CA)")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "bound on each request (for streams: on each pause); 0 for none")
}

// Run is `gatehouse admin ARGS...` (args after "admin"). env reads the
// environment (os.Getenv); stdin is read by --password-stdin only.
func Run(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if env == nil {
		env = func(string) string { return "" }
	}
	g := &globals{url: env("GATEHOUSE_URL"), token: env("GATEHOUSE_TOKEN"), output: "table", timeout: 30 * time.Second}
	fs := flag.NewFlagSet("gatehouse admin", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, "usage:\n"+Usage())
			return 0
		}
		fmt.Fprintf(stderr, "gatehouse admin: %v\nusage:\n%s", err, Usage())
		return 2
	}
	rest := fs.Args()
	switch {
	case len(rest) == 0:
		fmt.Fprint(stderr, "usage:\n"+Usage())
		return 2
	case rest[0] == "help":
		fmt.Fprint(stdout, "usage:\n"+Usage())
		return 0
	}
	v, n := lookup(rest)
	if v == nil {
		if sub := groupVerbs(rest[0]); len(sub) > 0 && (len(rest) == 1 || strings.HasPrefix(rest[1], "-")) {
			fmt.Fprintf(stderr, "gatehouse admin %s: give a verb: %s\nusage:\n%s", rest[0], strings.Join(sub, ", "), Usage())
			return 2
		}
		fmt.Fprintf(stderr, "gatehouse admin: unknown verb %q\nusage:\n%s", strings.Join(rest[:min(2, len(rest))], " "), Usage())
		return 2
	}
	c := &cmd{ctx: ctx, g: g, v: v, stdin: stdin, stdout: stdout, stderr: stderr}
	err := v.run(c, rest[n:])
	return c.report(err)
}

// lookup finds the verb args start with ("me", or a group and a verb) and
// how many words it took.
func lookup(args []string) (*verb, int) {
	for i := range verbs {
		words := strings.Fields(verbs[i].name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == verbs[i].name {
			return &verbs[i], len(words)
		}
	}
	return nil, 0
}

// groupVerbs lists the verbs of a group ("orgs": list, get, ...).
func groupVerbs(group string) []string {
	var out []string
	for _, v := range verbs {
		if g, name, ok := strings.Cut(v.name, " "); ok && g == group {
			out = append(out, name)
		}
	}
	return out
}

// verb is one `gatehouse admin` verb.
type verb struct {
	name string // "users list"
	args string // its arguments, for the usage
	run  func(c *cmd, args []string) error
}

// cmd is one verb being run.
type cmd struct {
	ctx            context.Context
	g              *globals
	v              *verb
	fs             *flag.FlagSet
	stdin          io.Reader
	stdout, stderr io.Writer
	api            *client
}

// flags starts the verb's flag set, with the globals in it.
func (c *cmd) flags() *flag.FlagSet {
	c.fs = flag.NewFlagSet("gatehouse admin "+c.v.name, flag.ContinueOnError)
	c.fs.SetOutput(io.Discard)
	c.g.register(c.fs)
	return c.fs
}

// usageError is a wrong command line for the verb: exit 2, with its usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// errHelp is -h or --help after a verb.
var errHelp = errors.New("help")

// parse parses the verb's flags, which may come before, between or after
// its positional arguments (flag stops at the first of them), checks that
// there are exactly the positional arguments named, and connects.
func (c *cmd) parse(args []string, positional ...string) ([]string, error) {
	pos, err := c.parseAny(args)
	if err != nil {
		return nil, err
	}
	if len(pos) < len(positional) {
		return nil, usagef("missing %s", strings.Join(positional[len(pos):], " "))
	}
	if len(pos) > len(positional) {
		return nil, usagef("unexpected argument %q", pos[len(positional)])
	}
	return pos, nil
}

// parseAny is parse for a verb that checks its positional arguments itself.
func (c *cmd) parseAny(args []string) ([]string, error) {
	if c.fs == nil {
		c.flags()
	}
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, &usageError{err.Error()}
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...) // after --, everything is an argument
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if c.g.output != "table" && c.g.output != "json" {
		return nil, usagef("--output must be table or json, not %q", c.g.output)
	}
	api, err := newClient(c.g)
	if err != nil {
		return nil, err
	}
	c.api = api
	return pos, nil
}

func (c *cmd) json() bool { return c.g.output == "json" }

// report prints err as the exit status says and returns that status.
// Nothing printed holds the API token: it is never put in an error, and
// is scrubbed from every message in case something echoes it anyway.
func (c *cmd) report(err error) int {
	if err == nil {
		return 0
	}
	var b strings.Builder
	code := 1
	var (
		ae *apiError
		ue *usageError
		ce *configError
	)
	switch {
	case errors.Is(err, errHelp):
		c.printUsage(c.stdout)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(&b, "gatehouse admin %s: %s\n", c.v.name, ue.msg)
		c.printUsage(&b)
		code = 2
	case errors.As(err, &ce):
		fmt.Fprintf(&b, "gatehouse admin: %s\n", ce.msg)
		code = 2
	case errors.As(err, &ae):
		fmt.Fprintf(&b, "gatehouse admin: %s\n", clean(ae.Error()))
		for _, f := range ae.Errors {
			if len(ae.Errors) == 1 && ae.Detail == f.Pointer+": "+f.Detail {
				continue // the API puts a lone field error in the detail too
			}
			fmt.Fprintf(&b, "  %s: %s\n", clean(f.Pointer), clean(f.Detail))
		}
		if ae.Status >= 500 && ae.RequestID != "" {
			fmt.Fprintf(&b, "  request id: %s\n", clean(ae.RequestID))
		}
		if ae.Hint != "" {
			fmt.Fprintf(&b, "gatehouse admin: %s\n", ae.Hint)
		}
	default:
		fmt.Fprintf(&b, "gatehouse admin: %s\n", clean(err.Error()))
		if hint := transportHint(err); hint != "" {
			fmt.Fprintf(&b, "gatehouse admin: %s\n", hint)
		}
	}
	msg := b.String()
	// A real token is 74 characters; scrubbing a short string that is
	// not one would only garble the message.
	if t := strings.TrimSpace(c.g.token); len(t) >= 16 {
		msg = strings.ReplaceAll(msg, t, "[token]")
	}
	fmt.Fprint(c.stderr, msg)
	return code
}

// printUsage prints the verb's usage and its own flags (not the globals,
// which Usage describes).
func (c *cmd) printUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: gatehouse admin %s %s\n", c.v.name, c.v.args)
	if c.fs == nil {
		return
	}
	c.fs.VisitAll(func(f *flag.Flag) {
		if globalNames[f.Name] {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%-24s %s\n", line, usage)
	})
}
