"""The soak: randomised ELSPETH-shaped runs under faults and crashes, exactly once at the end."""
