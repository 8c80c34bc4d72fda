"""Figures and reports drawn from saved results."""
