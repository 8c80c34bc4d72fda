"""Evaluation: benchmark evaluation (`lnprobe eval`) with readers of the official files (`bench`), batched
greedy generation (`generate`) and scorers as pure functions (`scorers`, `vqa`, `captions`); and answer
accuracy on short-answer questions (`accuracy`: teacher-forced greedy, Wilson interval, majority
baseline), which the miniature reports."""
