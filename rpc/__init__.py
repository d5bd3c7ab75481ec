"""The gRPC face of the control plane: thin servicers, the bridge to the actors, the server lifecycle."""
