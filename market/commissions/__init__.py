"""Commissions of those who sell for farmers: village stations and livestream hosts."""
