"""Model files the swarm's nodes generate or inspect (the lab's tiny GGUF, for one)."""
