"""Tools over stored runs: export, validate, plan, dead letters, the run's topics."""
