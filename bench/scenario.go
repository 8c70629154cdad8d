package bench

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Scenario is one named run of a scenario file. Options use the long flag
// names of warrenperf ("producers", "size", "confirm", "flag", "time", ...)
// with JSON strings, numbers, booleans, or arrays for repeatable flags.
//
//	{"scenarios": [
//	  {"name": "persistent-1k", "description": "...",
//	   "options": {"size": 1024, "confirm": 256, "flag": "persistent", "time": 20}}
//	]}
type Scenario struct {
	// Name identifies the scenario in tables and plots.
	Name string `json:"name"`
	// Description says what the scenario measures.
	Description string `json:"description,omitempty"`
	// Options are applied to DefaultConfig like flags.
	Options map[string]any `json:"options"`
}

//go:embed scenarios/standard.json
var standardJSON []byte

// StandardScenarios returns the standard suite (scenarios/standard.json,
// built in): persistent, transient, backlog, fan-out, many queues, topic
// routing, latency at fixed load and large messages.
func StandardScenarios() []Scenario {
	s, err := ParseScenarios(standardJSON)
	if err != nil {
		// The file is checked by TestStandardScenarios.
		return nil
	}
	return s
}

// LoadScenariosOrStandard loads path, or returns the built-in standard suite
// when path is "standard".
func LoadScenariosOrStandard(path string) ([]Scenario, error) {
	if path == "standard" {
		return ParseScenarios(standardJSON)
	}
	return LoadScenarios(path)
}

// scenarioFile is the top level of a scenario file.
type scenarioFile struct {
	Scenarios []Scenario `json:"scenarios"`
}

// LoadScenarios reads and checks a scenario file.
func LoadScenarios(path string) ([]Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScenario, err)
	}
	s, err := ParseScenarios(data)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return s, nil
}

// ParseScenarios decodes a scenario file and checks that every scenario has
// a unique name and options that make a valid Config.
func ParseScenarios(data []byte) ([]Scenario, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var f scenarioFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrScenario, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the scenario object", ErrScenario)
	}
	if len(f.Scenarios) == 0 {
		return nil, fmt.Errorf("%w: no scenarios", ErrScenario)
	}
	seen := map[string]bool{}
	for i, s := range f.Scenarios {
		if strings.TrimSpace(s.Name) == "" {
			return nil, fmt.Errorf("%w: scenario %d has no name", ErrScenario, i+1)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("%w: scenario name %q used twice", ErrScenario, s.Name)
		}
		seen[s.Name] = true
		c, err := s.Config()
		if err != nil {
			return nil, fmt.Errorf("%w: scenario %q: %w", ErrScenario, s.Name, err)
		}
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("%w: scenario %q: %w", ErrScenario, s.Name, err)
		}
	}
	return f.Scenarios, nil
}

// Config returns DefaultConfig with the scenario's options applied and the
// scenario name as run ID unless the options set one.
func (s Scenario) Config() (Config, error) {
	c := DefaultConfig()
	if err := ApplyOptions(&c, s.Options); err != nil {
		return c, err
	}
	if c.ID == "" {
		c.ID = s.Name
	}
	return c, nil
}

// SelectScenarios picks scenarios by name or 1-based position, in the order
// asked; no selectors returns all.
func SelectScenarios(all []Scenario, selectors []string) ([]Scenario, error) {
	if len(selectors) == 0 {
		return all, nil
	}
	var out []Scenario
	for _, sel := range selectors {
		sel = strings.TrimSpace(sel)
		found := false
		if n, err := strconv.Atoi(sel); err == nil && n >= 1 && n <= len(all) {
			out = append(out, all[n-1])
			found = true
		} else {
			for _, s := range all {
				if s.Name == sel {
					out = append(out, s)
					found = true
					break
				}
			}
		}
		if !found {
			names := make([]string, len(all))
			for i, s := range all {
				names[i] = s.Name
			}
			return nil, fmt.Errorf("%w: no scenario %q (have %s)", ErrScenario, sel, strings.Join(names, ", "))
		}
	}
	return out, nil
}
