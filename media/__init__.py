"""Audio for the devices: decoding sound files, Opus encoding, the per-mode library, real-time pacing."""
