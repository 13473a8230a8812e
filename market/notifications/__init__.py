"""Notifications: email, SMS and webhooks about orders, payouts and stock."""
