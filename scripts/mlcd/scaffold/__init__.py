"""`mlcd init` and `mlcd validate --github`: a first run on github.com (issue 20)."""
