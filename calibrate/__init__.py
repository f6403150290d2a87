"""calibrate: PTQ sweeps, tiered evaluation and the results store. Importing it loads no torch or lm-eval."""
