"""What test modules share: builders and fakes imported by more than one module (never tests)."""
