"""Local tooling: the demo, the emulated AWS side and its stricter layer, data generators."""
