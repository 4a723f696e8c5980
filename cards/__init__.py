"""Neutral cards, platform templates and charts."""
