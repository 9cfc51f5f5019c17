"""The results record: what a job writes and every reader reads (the job record's types, the shared
vocabulary, the metrics' definitions, atomic writes and ``summary.csv``). It imports no engine, no
torch and no model: the engine writes it, analysis and reports read it."""
