"""lnprobe."""
