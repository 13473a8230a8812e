"""Inventory sync: one stock shared with the farmer's other sales channels."""
