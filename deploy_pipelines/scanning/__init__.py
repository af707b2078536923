"""The scan gate: scanner outputs parsed into findings, judged against fail_on and allow entries,
plus the migration-safety lint."""
