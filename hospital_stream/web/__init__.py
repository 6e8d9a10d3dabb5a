"""The web layer: the views over the tables, the dashboard, static files; read-only."""
