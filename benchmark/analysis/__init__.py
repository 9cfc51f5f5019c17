"""Analysis: statistics over a plain table of scores (seeds x tasks), the paper's hypotheses and the
comparison of two results folders. Reads the results record only: no torch, no models, no engine."""
