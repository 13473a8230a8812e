"""Payments: a gateway per provider, the payment state, refunds, webhooks."""
