"""What the agents call: the generator on its wall-clock schedule and the table-update rules."""
