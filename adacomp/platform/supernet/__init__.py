"""The AdaSpring side: supernet training (local and on Ray), its configuration search, the bundle."""
