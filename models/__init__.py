"""affectflow's networks, losses, training loops and metrics: pure torch, never a file format."""
