"""fit: the stratified scaling laws, their fits (OLS as in the paper; Bayesian in NumPyro) and profile writing.

Importing ``fit`` (or ``strata.law``) loads numpy only: jax and numpyro are imported by the modules that use them.
"""
