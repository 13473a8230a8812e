"""Orders: multi-farm orders, farm parts, catch-weight packing, pickup."""
