"""The AdaSpring side: the supernet's configuration search, the bundle (training: supernet_training)."""
