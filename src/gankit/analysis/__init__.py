"""Analyses of trained runs: what a GAN learned, and whether it copies its training data.

Submodules are imported by name (e.g. `gankit.analysis.memorisation`) so that importing the
package does not pull in matplotlib or SciPy.
"""
