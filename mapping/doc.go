// Package mapping is woorelay's mapping engine: it compiles the YAML documents that say how an
// SDK event becomes Woopra HTTP Tracking API requests, and runs them.
//
// Three kinds of document feed it. A blueprint (package blueprint embeds Woopra's) declares the
// endpoints, their parameters and prefixes (ce_, cv_, cs_), the identity policy and the event
// contract. A preset (package presets embeds the four shipped ones) chooses settings and the
// mappings that reproduce one system. Mapping files add or override mappings; LoadDir reads a
// folder of them.
//
// Compile turns a preset and its Options (the blueprint, the user's settings, overlay mapping files) into a Program,
// reporting every problem at once as Diagnostics with file:line:col. A Program is immutable and
// safe to share: Run and RunInto map one event (field paths read with gjson, computed values with
// expr, tables, spreads, conversions, identity precedence) into a Result of Requests or a filter
// or reject outcome; Explain does the same and returns a Trace of why each field became what it
// is. The schema of every document is declared once (spec.go) and feeds the parser, the linter
// (mapping/lint) and `woorelay docs`.
package mapping
