"""The embedded local stack: a Tansu broker and a PostgreSQL server on 127.0.0.1."""
