module github.com/callfsm/callfsm

go 1.26.8

require (
	github.com/google/uuid v1.6.0
	github.com/looplab/fsm v1.0.3
	github.com/peterbourgon/ff/v3 v3.4.0
	github.com/stretchr/testify v1.12.1
	go.uber.org/goleak v1.3.0
	golang.org/x/term v0.48.0
)

require (
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
