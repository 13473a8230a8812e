"""Village stations: orders staff place for villagers, confirmed by a code
sent to the villager's phone and paid in cash on collection."""
