"""`pgha-operator drill`: prove the HA by injecting faults while writing (docs/drill.md)."""
