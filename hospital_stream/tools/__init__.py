"""Tools over stored runs: export, validate, plan."""
