package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// flagSet is a flag.FlagSet whose flags also read an EYEFLOW_* environment
// variable; the command line wins over the environment.
//
// parse does everything a command needs from its command line: flags before
// or after the positional arguments, the environment for flags not given,
// secrets refused on the command line (and only there), required flags and
// the number of arguments checked with a one-line error naming what is
// missing, deprecated names accepted with a warning, and validators whose
// errors name the variable a bad value came from.
type flagSet struct {
	*flag.FlagSet
	name     string
	args     string
	summary  string
	out      io.Writer         // --help goes here
	errOut   io.Writer         // deprecation warnings go here
	env      map[string]string // flag name -> env var
	secrets  map[string]bool   // flags refused on the command line
	required map[string]bool
	// deprecated maps an old flag name to the one that replaces it.
	deprecated map[string]string
	// cmdline are the flags given on the command line, fromEnv those
	// filled from their variable, by the last parse.
	cmdline map[string]bool
	fromEnv map[string]bool
	// examples are printed under the flags by --help.
	examples []string
}

func newFlagSet(name, args, summary string, out, errOut io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), name: name, args: args, summary: summary,
		out: out, errOut: errOut, env: map[string]string{}, secrets: map[string]bool{}, required: map[string]bool{},
		deprecated: map[string]string{}, cmdline: map[string]bool{}, fromEnv: map[string]bool{}}
	// The flag package prints its own usage on every error; parse reports
	// errors in one line instead, and --help prints help.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// help writes what the command does, its arguments and every flag with its
// variable and default.
func (fs *flagSet) help(w io.Writer) {
	args := ""
	if fs.args != "" {
		args = " " + fs.args
	}
	fmt.Fprintf(w, "usage: eyeflow %s [flags]%s\n\n%s\n\nflags (each also read from the environment variable shown; the command line wins):\n", fs.name, args, fs.summary)
	fs.VisitAll(func(f *flag.Flag) {
		if _, old := fs.deprecated[f.Name]; old {
			return
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		if fs.required[f.Name] {
			def = " (required)"
		}
		fmt.Fprintf(w, "  --%s  [$%s]%s\n      %s\n", f.Name, fs.env[f.Name], def, f.Usage)
	})
	if len(fs.deprecated) > 0 {
		var olds []string
		for old := range fs.deprecated {
			olds = append(olds, old)
		}
		sort.Strings(olds)
		fmt.Fprintf(w, "\ndeprecated names (accepted with a warning until the next release):\n")
		for _, old := range olds {
			fmt.Fprintf(w, "  --%s  use --%s\n", old, fs.deprecated[old])
		}
	}
	if len(fs.examples) > 0 {
		fmt.Fprintf(w, "\nexamples:\n")
		for _, e := range fs.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
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

// require marks string flags that must be set, on the command line or in
// the environment.
func (fs *flagSet) require(names ...string) {
	for _, n := range names {
		if fs.Lookup(n) == nil {
			panic("require: no flag --" + n)
		}
		fs.required[n] = true
	}
}

// deprecate accepts old as another name of the flag current, with a
// warning, for one release. The old name has no variable of its own.
func (fs *flagSet) deprecate(old, current string) {
	f := fs.Lookup(current)
	if f == nil {
		panic("deprecate: no flag --" + current)
	}
	fs.Var(aliasValue{f.Value}, old, "deprecated: use --"+current)
	fs.deprecated[old] = current
}

// aliasValue sets the flag it stands for (keeping a bool flag's syntax).
type aliasValue struct{ flag.Value }

func (a aliasValue) IsBoolFlag() bool {
	b, ok := a.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// given reports whether the flag was on the command line (under its own
// name or a deprecated one).
func (fs *flagSet) given(name string) bool {
	if fs.cmdline[name] {
		return true
	}
	for old, cur := range fs.deprecated {
		if cur == name && fs.cmdline[old] {
			return true
		}
	}
	return false
}

// errUsage means the command line was wrong and usage was printed.
var errUsage = errors.New("usage")

// usageError is a wrong command line, said in one line: an unknown flag or
// subcommand, a missing required flag, the wrong number of arguments. The
// process exits 2, as for any usage error.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// Is makes errors.Is(err, errUsage) true for usage errors too.
func (e *usageError) Is(target error) bool { return target == errUsage }

func (fs *flagSet) usageErr(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf("%s: %s (eyeflow %s --help)", fs.name, fmt.Sprintf(format, a...), fs.name)}
}

// parse reads the command line (flags before or after the positional
// arguments; `--` ends the flags), fills flags not given there from the
// environment, checks secrets, required flags and the number of arguments,
// then runs the validators. Errors name the flag or its variable.
// It returns flag.ErrHelp after printing help for -h, --help.
func (fs *flagSet) parse(args []string, validators ...func() error) error {
	if err := fs.Parse(fs.reorder(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.help(fs.out)
			return flag.ErrHelp
		}
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			msg = "unknown flag --" + name
		} else {
			msg = strings.ReplaceAll(strings.ReplaceAll(msg, " flag -", " flag --"), "argument: -", "argument: --")
		}
		return fs.usageErr("%s", msg)
	}
	// Only what the command line set: the environment below is applied
	// through the flag's value, which the flag package does not record
	// as given, so parsing again never mistakes it for the command line.
	clear(fs.cmdline)
	clear(fs.fromEnv)
	fs.Visit(func(f *flag.Flag) { fs.cmdline[f.Name] = true })
	for name := range fs.secrets {
		if fs.cmdline[name] {
			return &usageError{msg: fmt.Sprintf("%s: --%s is a secret: pass it in $%s or a file, not on the command line", fs.name, name, fs.env[name])}
		}
	}
	var olds []string
	for old := range fs.deprecated {
		if fs.cmdline[old] {
			olds = append(olds, old)
		}
	}
	sort.Strings(olds)
	for _, old := range olds {
		fmt.Fprintf(fs.errOut, "eyeflow %s: --%s is deprecated and goes away in the next release: use --%s\n", fs.name, old, fs.deprecated[old])
	}
	names := make([]string, 0, len(fs.env))
	for n := range fs.env {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if fs.given(name) {
			continue
		}
		v, ok := os.LookupEnv(fs.env[name])
		if !ok {
			continue
		}
		if err := fs.Lookup(name).Value.Set(v); err != nil {
			return fmt.Errorf("%s: $%s=%q (--%s): %w", fs.name, fs.env[name], v, name, err)
		}
		fs.fromEnv[name] = true
	}
	for _, name := range sortedKeys(fs.required) {
		if fs.Lookup(name).Value.String() == "" {
			return fs.usageErr("--%s is required: %s", name, fs.Lookup(name).Usage)
		}
	}
	if err := fs.checkArgs(); err != nil {
		return err
	}
	for _, v := range validators {
		if err := fs.check(v()); err != nil {
			return err
		}
	}
	return nil
}

// checkArgs holds the positional arguments to fs.args: "" takes none,
// "FILE..." one or more, "[FILE...]" any number, "NAME VERSION" exactly two.
func (fs *flagSet) checkArgs() error {
	words := strings.Fields(fs.args)
	lo, hi := 0, 0
	for _, w := range words {
		optional := strings.HasPrefix(w, "[")
		if !optional {
			lo++
		}
		if strings.HasSuffix(strings.TrimSuffix(w, "]"), "...") {
			hi = -1
		} else if hi >= 0 {
			hi++
		}
	}
	n := fs.NArg()
	switch {
	case hi == 0 && n > 0:
		return fs.usageErr("takes no arguments, got %q", fs.Args())
	case n < lo:
		return fs.usageErr("want %s, got %d argument%s", fs.args, n, plural(n))
	case hi > 0 && n > hi:
		return fs.usageErr("want %s, got %d arguments: %q", fs.args, n, fs.Args())
	}
	return nil
}

// check returns err with every flag the environment set named by its
// variable too: "$EYEFLOW_ENVS (--envs) ...", not just "--envs ...".
func (fs *flagSet) check(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	if cmd, _, _ := strings.Cut(fs.name, " "); !strings.HasPrefix(msg, cmd) {
		msg, changed = fs.name+": "+msg, true
	}
	for name := range fs.fromEnv {
		re := regexp.MustCompile(`--` + regexp.QuoteMeta(name) + `([^a-z0-9-]|$)`)
		if loc := re.FindStringIndex(msg); loc != nil {
			msg = msg[:loc[0]] + "$" + fs.env[name] + " (--" + name + ")" + msg[loc[0]+2+len(name):]
			changed = true
		}
	}
	if !changed {
		return err
	}
	return fmt.Errorf("%s", msg)
}

// reorder moves the flags in front of the positional arguments, so flags
// may follow them (`eyeflow model push DIR --name N`): Go's flag package
// stops at the first positional argument. The flags are parsed once.
func (fs *flagSet) reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // parse names the unknown flag
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !(ok && b.IsBoolFlag()) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if len(pos) == 0 {
		return flags
	}
	return append(append(flags, "--"), pos...)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
