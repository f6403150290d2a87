"""The ground floor of strata: definitions every package shares and that import none of them.

advisor and calibrate stand side by side on it, fit above both. Nothing here imports torch, jax or lm-eval, or
any of the three packages; a test over the imports keeps it so.
"""
