"""Search stage: family x widths x formats within a latency or size budget."""
