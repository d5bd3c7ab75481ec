"""The fleet's application logic: one Pykka actor per device and a supervisor that routes to them."""
