"""Pure checks: arrays in, findings out. Nothing here reads files, Redis or the clock."""
