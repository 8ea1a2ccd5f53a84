"""Access protocols: thin translations onto the kernel."""
