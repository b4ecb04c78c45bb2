"""`annotune evaluate`: base vs tuned on held-out questions, a report people trust, and the flywheel back to the workbench."""
