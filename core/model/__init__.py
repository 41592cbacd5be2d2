"""What a model is and where it lives: its card, its network, the registry (with the one list of its files), its zip."""
