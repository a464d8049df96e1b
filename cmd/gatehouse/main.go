// Command gatehouse is the edge authentication proxy. main parses the
// command line and wires; the work happens in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/admincli"
	"github.com/gatehouse/gatehouse/internal/devmode"
	"github.com/gatehouse/gatehouse/internal/logging"
	"github.com/gatehouse/gatehouse/internal/notifycli"
	"github.com/gatehouse/gatehouse/internal/policycli"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

var usage = `usage:
  gatehouse serve --config FILE     run a deployment
  gatehouse serve --dev             run a demo deployment with nothing to set up
  gatehouse serve --dev --https     the same over HTTPS, from a local CA it prints the path of
  gatehouse config validate FILE    check a config file; every problem with its key path and line
  gatehouse policy test DIR...      run the *_test.rego tests of each policy directory
  gatehouse policy eval --platform|--route|--org PATH [--input FILE] [--data FILE]
                                    evaluate policies over an input document (exit 0 allow, 3 deny)
  gatehouse policy input --config FILE --user EMAIL --url URL [--org SLUG] [--method M]
                         [--header 'K: V'] [--client ADDR] [--mfa]
                                    print the input document the proxy would build
  gatehouse notify preview --config FILE --org SLUG [--kind K] [--part P] [--out DIR]
                                    render an org's messages with sample fields
  gatehouse admin bootstrap --config FILE [--name NAME] [--expires-in 24h]
                                    make a platform admin API token in a stopped deployment's store
` + admincli.Usage() + `  gatehouse audit verify (--config FILE | --ops URL) [--org SLUG]
                                    check the audit trail's hash chains (exit 1 on a break)
  gatehouse store copy --from badger:PATH|postgres:DSN --to badger:PATH|postgres:DSN
                                    copy a stopped deployment's store into a new one, and verify it
  gatehouse version                 print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "config":
		if len(args) != 3 || args[1] != "validate" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		cfg, err := config.Load(args[2])
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		for _, w := range cfg.Warnings {
			fmt.Fprintf(stderr, "%s:%d:%d: warning: %s: %s\n", args[2], w.Line, w.Column, w.Path, w.Msg)
		}
		if err := policycli.CheckConfig(context.Background(), cfg); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", args[2], err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", args[2])
		return 0
	case "policy":
		if len(args) < 2 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		switch args[1] {
		case "test":
			return policycli.Test(ctx, args[2:], stdout, stderr)
		case "eval":
			return policycli.Eval(ctx, args[2:], os.Stdin, stdout, stderr)
		case "input":
			return policycli.Input(args[2:], stdout, stderr)
		}
		fmt.Fprint(stderr, usage)
		return 2
	case "notify":
		if len(args) < 2 || args[1] != "preview" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		return notifycli.Preview(args[2:], stdout, stderr)
	case "admin":
		if len(args) >= 2 && args[1] == "bootstrap" {
			return adminBootstrap(context.Background(), args[2:], stdout, stderr)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		return admincli.Run(ctx, args[1:], os.Getenv, os.Stdin, stdout, stderr)
	case "store":
		if len(args) < 2 || args[1] != "copy" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		return storeCopy(context.Background(), args[2:], stdout, stderr)
	case "audit":
		if len(args) < 2 || args[1] != "verify" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		return auditVerify(context.Background(), args[2:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "gatehouse %s\n", buildVersion())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gatehouse: unknown command %q\n%s", args[0], usage)
	return 2
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file")
	dev := fs.Bool("dev", false, "run a demo deployment: fresh data folder, demo orgs and upstream")
	listen := fs.String("listen", "", "override listen (with --dev: default 127.0.0.1:8080)")
	opsListen := fs.String("ops-listen", "", "override ops_listen (with --dev: default 127.0.0.1:9090)")
	https := fs.Bool("https", false, "with --dev: serve HTTPS (default 127.0.0.1:8443) from a local CA in $GATEHOUSE_DEV_CA_DIR or the user config folder")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dev == (*cfgPath != "") {
		fmt.Fprintln(stderr, "gatehouse serve: give exactly one of --config FILE or --dev")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var cfg *config.Config
	var setup *devmode.Setup
	if *dev {
		var err error
		port, caDir := "127.0.0.1:8080", ""
		if *https {
			port, caDir = "127.0.0.1:8443", devCADir()
		}
		setup, err = devmode.New(or(*listen, port), or(*opsListen, "127.0.0.1:9090"), *https, caDir)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer setup.Upstream.Close()
		defer os.RemoveAll(setup.DataDir) // dev data lives as long as the process
		cfg = setup.Config
	} else {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if *listen != "" {
			cfg.Listen = *listen
		}
		if *opsListen != "" {
			cfg.OpsListen = *opsListen
		}
	}
	log := logging.New(logging.Options{Level: cfg.Log.Level, Format: cfg.Log.Format}, stderr)
	defer log.Close()
	logCtx, stopLog := context.WithCancel(context.Background())
	defer stopLog()
	go log.Run(logCtx)
	// Libraries that log through slog's default (the OpenID Provider
	// library) write to the same stream, in the same format.
	slog.SetDefault(log.Logger.With("component", "library"))
	setMemoryLimit(log.Logger)
	opts := deployOptions{Logger: log.Logger, ConfigFile: *cfgPath}
	if setup != nil {
		opts.ConfigFile = "the dev mode's built-in config"
		opts.AdminToken = func(secret string) { setup.AdminToken = secret }
		opts.Ready = func(string, string) { fmt.Fprint(stdout, setup.Banner()) }
	}
	if err := deploy(ctx, cfg, opts); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("gatehouse: exiting", "err", err)
		return 1
	}
	return 0
}

// devCADir is where the dev CA lives across runs, so it is trusted once.
func devCADir() string {
	if d := os.Getenv("GATEHOUSE_DEV_CA_DIR"); d != "" {
		return d
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "gatehouse", "dev-ca")
	}
	return filepath.Join(os.TempDir(), "gatehouse-dev-ca")
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
