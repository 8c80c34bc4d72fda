"""Benchmark evaluation (`lnprobe eval`): readers of the official files (`bench`), batched greedy
generation (`generate`), and scorers as pure functions (`scorers`, `vqa`, `captions`)."""
