"""The run loop: the reader, the workers with their retry policy, the
supervisor that owns every early end, and the signals that ask for one."""
