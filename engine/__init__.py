"""The segflow engine: Faust app, wire schemas, rules and segments, CLI."""
