"""Operators' reconciliation of the ledger with the payment provider and the offline confirmations."""
