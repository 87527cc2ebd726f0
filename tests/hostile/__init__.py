"""The hostile-input, fault and secret suite (issue 7): bad options, bad rows, Azure faults, leaks."""
