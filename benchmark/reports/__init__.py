"""Reports: the files a results folder shows a reader (tables, figures, claims, dataset provenance,
the hypothesis report), built by pure functions from the results record and the analysis."""
