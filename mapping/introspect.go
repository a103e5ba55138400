package mapping

import "sort"

// The methods in this file describe a compiled program for tools (lint, explain, docs): what it
// reads, what it writes and where each piece is declared.

// PathRef is one event path the program reads, with every place that reads it.
type PathRef struct {
	Path string      // as written
	Keys []string    // its leading plain object keys
	Tail string      // the gjson remainder after them (queries, indexes), if any
	Refs []SourceRef // the declarations that read it
}

// Paths lists the event paths the program reads, in the order they were first declared.
func (p *Program) Paths() []PathRef {
	out := make([]PathRef, len(p.paths.paths))
	for i, path := range p.paths.paths {
		keys, tail, _ := splitPath(path)
		out[i] = PathRef{Path: path, Keys: keys, Tail: tail, Refs: p.paths.refs[i]}
	}
	return out
}

// FieldRef is one declared field as used by one mapping.
type FieldRef struct {
	SourceRef
	Mapping string
	Name    string
	Header  bool
}

// Fields lists the fields of every mapping (inherited common fields appear under each mapping
// that uses them, with the position of their declaration).
func (p *Program) Fields() []FieldRef {
	var out []FieldRef
	for _, m := range p.mappings {
		for _, group := range [][]*cfield{m.fields, m.headers} {
			for _, f := range group {
				out = append(out, FieldRef{SourceRef: f.at, Mapping: m.name, Name: f.name, Header: f.header})
			}
		}
	}
	return out
}

// RowRef is one row of a lookup table.
type RowRef struct {
	SourceRef
	Table string
	Key   string
	Value string
}

// TableRows lists the rows of every table that some field looks up, by table name and file order.
func (p *Program) TableRows() []RowRef {
	used := map[string]bool{}
	for _, m := range p.mappings {
		for _, group := range [][]*cfield{m.fields, m.headers} {
			for _, f := range group {
				if f.table != nil {
					used[f.table.Name] = true
				}
			}
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []RowRef
	for _, n := range names {
		t := p.tables[n]
		for _, k := range t.Order {
			v, _ := t.find(k)
			ref := RowRef{Table: n, Key: k, Value: v}
			if node := t.rowNodes[k]; node != nil {
				ref.SourceRef = SourceRef{File: t.file, Line: node.Line, Col: node.Column}
			}
			out = append(out, ref)
		}
	}
	return out
}

// MappingNames lists the program's mappings in the order they are tried.
func (p *Program) MappingNames() []string {
	out := make([]string, len(p.mappings))
	for i, m := range p.mappings {
		out[i] = m.name
	}
	return out
}

// Visitor returns the key that identifies the visitor a request is about, by the blueprint's
// identity order (cv_id > cv_email > cookie for Woopra): the first identity parameter present,
// as "name=value". Delivery keeps each visitor's requests in order by this key. It returns ""
// when the request carries none of them.
func (p *Program) Visitor(r Request) string {
	if i, j := p.identity.first(r.Params); i >= 0 {
		return p.identity.Order[i] + "=" + r.Params[j].Value
	}
	return ""
}
