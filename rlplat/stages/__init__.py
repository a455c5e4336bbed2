"""Pipeline stages. Each stage takes a model directory and returns the one the next consumes."""
