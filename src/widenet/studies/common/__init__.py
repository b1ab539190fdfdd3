"""What every study shares: the study types (``base``), building a config (``config``),
power-law fits and means with standard errors (``fits``), derived seeds (``seeds``) and field
checks for configs (``validators``). Nothing here knows a particular study, the run store or
the HTML report."""
