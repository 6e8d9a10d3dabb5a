"""hospital-stream: a simulated state hospital streamed through Kafka and Faust into PostgreSQL."""

__version__ = "0.1.0"
