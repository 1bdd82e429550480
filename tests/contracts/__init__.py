"""One contract suite per extension point (channels, rules, solvers), each run against every
implementation its registry lists."""
