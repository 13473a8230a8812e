"""Catalog: farms, fulfilment points, categories, brands, listings and lots."""
