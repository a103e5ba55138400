package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/presets"
)

// settingFlags collects repeated --set KEY=VALUE flags.
type settingFlags map[string]string

func (s settingFlags) String() string { return "" }

func (s settingFlags) Set(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", kv)
	}
	s[k] = v
	return nil
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// programFlags are the flags every command that compiles a preset takes.
type programFlags struct {
	preset   string
	settings settingFlags
	mappings listFlag
	now      string
}

func (pf *programFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&pf.preset, "preset", "default", "built-in preset `name` or preset file")
	pf.registerNoPreset(fs)
}

// registerNoPreset adds the flags of register but --preset, for diff, whose presets are its
// arguments.
func (pf *programFlags) registerNoPreset(fs *flag.FlagSet) {
	pf.settings = settingFlags{}
	fs.Var(pf.settings, "set", "a setting as `KEY=VALUE` (repeatable), e.g. --set project=example.com")
	fs.Var(&pf.mappings, "mappings", "a `folder` of mapping files (*.yaml) laid over the preset (repeatable)")
	fs.StringVar(&pf.now, "now", "", "read events as if at this `time` (RFC 3339); default: the current time")
}

// clock returns the --now time, or the current time.
func (pf *programFlags) clock() (time.Time, error) {
	if pf.now == "" {
		return time.Now(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, pf.now)
	if err != nil {
		return t, fmt.Errorf("--now %q is not an RFC 3339 time (e.g. 2024-05-01T12:00:00Z)", pf.now)
	}
	return t, nil
}

// compile loads the preset with its overlays and settings.
func (pf *programFlags) compile(preset string, overlays []string, allowUnset bool) (*mapping.Program, error) {
	var srcs []mapping.Source
	for _, dir := range overlays {
		ov, err := mapping.LoadDir(dir)
		if err != nil {
			return nil, mapping.Diagnostic{File: dir, Code: "bad_mappings_folder", Msg: err.Error(), Hint: "--mappings takes a folder of *.yaml mapping files"}
		}
		srcs = append(srcs, ov...)
	}
	return presets.Compile(preset, mapping.Options{Settings: pf.settings, Overlays: srcs, AllowUnsetRequired: allowUnset})
}

// eventCommand is the shared start of commands that run one preset over input events: it parses
// the flags, compiles the preset and reads the input. A non-zero status, or no program (after
// -h), means the command is done.
func eventCommand(name, usage string, args []string, stdin io.Reader, stdout, stderr io.Writer) (*mapping.Program, time.Time, []byte, int) {
	fs := newFlagSet(name, usage)
	var pf programFlags
	pf.register(fs)
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return nil, time.Time{}, nil, code
	}
	now, err := pf.clock()
	if err != nil {
		fmt.Fprintf(stderr, "woorelay %s: %v\n", name, err)
		return nil, now, nil, 2
	}
	prog, err := pf.compile(pf.preset, pf.mappings, false)
	if err != nil {
		printConfigError(stderr, err)
		return nil, now, nil, 2
	}
	data, err := readInput(fs, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "woorelay %s: %v\n", name, err)
		return nil, now, nil, 1
	}
	return prog, now, data, 0
}

// readInput reads the single optional FILE|- argument.
func readInput(fs *flag.FlagSet, stdin io.Reader) ([]byte, error) {
	if fs.NArg() > 1 {
		return nil, fmt.Errorf("give at most one input file (or - for standard input)")
	}
	if name := fs.Arg(0); name != "" && name != "-" {
		return os.ReadFile(name)
	}
	return io.ReadAll(stdin)
}
