"""Running past one process: workers sharing the port on one host."""
