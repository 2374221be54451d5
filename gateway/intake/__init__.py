"""Intake: one SHEP SendMessage in, one answer out. `examiner` checks (no I/O), `pool` runs the examiner in
worker processes, `pipeline` (`Intake`) concludes against storage and answers."""
