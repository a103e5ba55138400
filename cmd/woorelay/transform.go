package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/tidwall/gjson"
	"github.com/woorelay/woorelay/mapping"
)

func cmdTransform(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	prog, now, data, code := eventCommand("transform", transformUsage, args, stdin, stdout, stderr)
	if code != 0 || prog == nil {
		return code
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	var line []byte
	index := 0
	emit := func(res mapping.Result) {
		line = res.AppendJSONLine(line[:0], index)
		out.Write(line)
		index++
	}
	if err := eachEvent(data, func(event []byte, bad error) {
		if bad != nil {
			emit(mapping.Result{Outcome: mapping.Rejected, Code: mapping.RejectInvalidJSON, Error: bad.Error()})
			return
		}
		emit(prog.Run(event, now))
	}); err != nil {
		out.Flush()
		fmt.Fprintf(stderr, "woorelay transform: %v\n", err)
		return 1
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(stderr, "woorelay transform: writing output: %v\n", err)
		return 1
	}
	return 0
}

func printConfigError(w io.Writer, err error) {
	var ds mapping.Diagnostics
	if errors.As(err, &ds) {
		for _, d := range ds {
			fmt.Fprintln(w, d.Error())
		}
		return
	}
	fmt.Fprintln(w, err.Error())
}

// eachEvent splits input into events. A whole-input JSON array or {"batch":[...]} yields its
// elements; a whole-input JSON object is one event; otherwise every non-blank line is one event
// (NDJSON), and a line that is not valid JSON is reported through bad without stopping the rest.
func eachEvent(data []byte, fn func(event []byte, bad error)) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil
	}
	if gjson.ValidBytes(trimmed) {
		whole := gjson.ParseBytes(trimmed)
		switch {
		case whole.IsArray():
			whole.ForEach(func(_, v gjson.Result) bool {
				fn([]byte(v.Raw), nil)
				return true
			})
			return nil
		case whole.IsObject():
			if batch := whole.Get("batch"); batch.IsArray() && !whole.Get("type").Exists() {
				batch.ForEach(func(_, v gjson.Result) bool {
					fn([]byte(v.Raw), nil)
					return true
				})
				return nil
			}
			fn(trimmed, nil)
			return nil
		}
		return fmt.Errorf("the input is a single JSON %s; want an event object, an array of events, {\"batch\":[...]} or NDJSON", whole.Type)
	}
	lineNo := 0
	for len(data) > 0 {
		var ln []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			ln, data = data[:i], data[i+1:]
		} else {
			ln, data = data, nil
		}
		lineNo++
		ln = bytes.TrimSpace(ln)
		if len(ln) == 0 {
			continue
		}
		if !gjson.ValidBytes(ln) {
			fn(nil, fmt.Errorf("line %d is not valid JSON", lineNo))
			continue
		}
		fn(ln, nil)
	}
	return nil
}
