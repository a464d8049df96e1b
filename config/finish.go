package config

import "sort"

// Finish applies defaults to and validates a Config built in code (as
// `serve --dev` does), with the same rules as Parse. Problems carry key
// paths but no line numbers.
func Finish(c *Config) error {
	d := &decoder{pos: map[string]position{}, bad: map[string]bool{}}
	c.applyDefaults()
	c.validate(d)
	if len(d.problems) > 0 {
		sort.SliceStable(d.problems, func(i, j int) bool { return d.problems[i].Path < d.problems[j].Path })
		return &Errors{File: "(built-in config)", Problems: d.problems}
	}
	return nil
}
