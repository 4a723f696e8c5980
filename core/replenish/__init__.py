"""Replenishment engine: numpy-only demand forecast, safety stock and explained order-up-to suggestions."""
