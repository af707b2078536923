"""The release history people read in the Dagster UI: declared deploy assets, numeric event
metadata the UI plots, asset checks, and DORA metrics computed from the instance's own events."""
