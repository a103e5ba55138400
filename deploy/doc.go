// Package deploy holds the tests of woorelay's deployment files: the Helm chart under helm/
// is linted and rendered with Helm's own Go packages, and the rendered manifests are checked
// against the flags of the woorelay binary built from this repository. It is a module of
// its own so that Helm's dependencies stay out of woorelay's.
package deploy
