// Package blueprint holds the Woopra blueprint: the YAML description of what Woopra's HTTP
// Tracking API accepts (endpoints, settings, built-in parameters, identity precedence and the
// output contract), embedded in the binary and parsed by the mapping package.
package blueprint

import (
	_ "embed"
	"sync"

	"github.com/woorelay/woorelay/mapping"
)

// WoopraYAML is the blueprint document as shipped.
//
//go:embed woopra.yaml
var WoopraYAML []byte

// WoopraFile is the name diagnostics use for the embedded blueprint.
const WoopraFile = "blueprint/woopra.yaml"

var (
	once    sync.Once
	woopra  *mapping.Blueprint
	loadErr error
)

// Woopra returns the parsed Woopra blueprint. It is parsed once; the result is shared and must
// not be modified.
func Woopra() (*mapping.Blueprint, error) {
	once.Do(func() { woopra, loadErr = mapping.ParseBlueprint(WoopraFile, WoopraYAML) })
	return woopra, loadErr
}

// ByName returns the blueprint called name, or nil when this build has none of that name.
func ByName(name string) (*mapping.Blueprint, error) {
	if name != "woopra" {
		return nil, nil
	}
	return Woopra()
}
