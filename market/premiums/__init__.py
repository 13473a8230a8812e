"""Per-kilogram premiums: programmes, their budgets, and what each line earns."""
