module github.com/woorelay/woorelay

go 1.26

require (
	github.com/expr-lang/expr v1.17.8
	github.com/mileusna/useragent v1.3.5
	github.com/tidwall/gjson v1.20.1
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.0 // indirect
)
