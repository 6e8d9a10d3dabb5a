"""The wire format: messages on the topics and their codecs (COPY text, batches, dead letters)."""
