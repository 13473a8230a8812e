"""The double-entry ledger: every money event is one balanced transaction."""
