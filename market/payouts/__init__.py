"""Farmer payouts: connected accounts and bank details, payout runs with
statements, Stripe transfers and reversals, bank-transfer files."""
