"""Admin commands (placeholder until written)."""
def main() -> None:
    raise SystemExit("not yet")
