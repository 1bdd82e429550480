"""One contract suite per extension point (channels, rules, solvers, commands), each run against
every implementation its registry lists."""
