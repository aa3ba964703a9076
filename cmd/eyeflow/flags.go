package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// flagSet is a flag.FlagSet whose flags also read an EYEFLOW_* environment
// variable; the command line wins over the environment.
type flagSet struct {
	*flag.FlagSet
	env     map[string]string // flag name -> env var
	secrets map[string]bool   // flags refused on the command line
	args    string
}

func newFlagSet(name, args, summary string, out io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), env: map[string]string{}, secrets: map[string]bool{}, args: args}
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: eyeflow %s [flags] %s\n\n%s\n\nflags (each also read from the environment variable shown):\n", name, args, summary)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(out, "  --%s  [$%s]%s\n      %s\n", f.Name, fs.env[f.Name], def, f.Usage)
		})
	}
	return fs
}

func envName(flagName string) string {
	return "EYEFLOW_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (fs *flagSet) bind(name string) { fs.env[name] = envName(name) }

func (fs *flagSet) stringVar(p *string, name, def, usage string) {
	fs.StringVar(p, name, def, usage)
	fs.bind(name)
}

// secretVar is a string read only from its environment variable: a secret
// on the command line would show in `ps` and shell history, so parse
// refuses it there.
func (fs *flagSet) secretVar(p *string, name, usage string) {
	fs.StringVar(p, name, "", usage+" (environment only, never the command line)")
	fs.bind(name)
	fs.secrets[name] = true
}

func (fs *flagSet) intVar(p *int, name string, def int, usage string) {
	fs.IntVar(p, name, def, usage)
	fs.bind(name)
}

func (fs *flagSet) int64Var(p *int64, name string, def int64, usage string) {
	fs.Int64Var(p, name, def, usage)
	fs.bind(name)
}

func (fs *flagSet) float64Var(p *float64, name string, def float64, usage string) {
	fs.Float64Var(p, name, def, usage)
	fs.bind(name)
}

func (fs *flagSet) boolVar(p *bool, name string, def bool, usage string) {
	fs.BoolVar(p, name, def, usage)
	fs.bind(name)
}

func (fs *flagSet) durationVar(p *time.Duration, name string, def time.Duration, usage string) {
	fs.DurationVar(p, name, def, usage)
	fs.bind(name)
}

// errUsage means the command line was wrong and usage was printed.
var errUsage = errors.New("usage")

// parse reads the command line, then fills flags not given there from the
// environment. Errors name the flag and its variable.
func (fs *flagSet) parse(args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return errUsage
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name := range fs.secrets {
		if given[name] {
			return fmt.Errorf("--%s is a secret: pass it in $%s or a file, not on the command line", name, fs.env[name])
		}
	}
	names := make([]string, 0, len(fs.env))
	for n := range fs.env {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if given[name] {
			continue
		}
		v, ok := os.LookupEnv(fs.env[name])
		if !ok {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("$%s=%q: %w", fs.env[name], v, err)
		}
	}
	return nil
}
