"""Benchmark scoring (pure functions in `scorers`); generation and `lnprobe eval` come with issue 7."""
